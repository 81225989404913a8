//! Stopping a connection thread without polling. The thread blocks in a
//! socket read until its next real deadline (a ping, a pong deadline, a
//! fragment expiry) — Feishu's ping interval is 2 minutes, so an idle
//! connection wakes about once per ping. To stop it sooner, the supervisor
//! drops its [`StopHandle`]: that sets a flag, shuts down the read side of
//! the connection's socket (the blocked read returns at once; the write
//! side stays open for the close frame) and disconnects the channel that
//! wakes the thread from a backoff wait.

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct Wake {
    stopped: AtomicBool,
    /// A clone of the open connection's socket, while there is one.
    socket: Mutex<Option<TcpStream>>,
}

/// The connection thread's side: asks whether it should stop, waits.
pub struct Stop {
    rx: Receiver<()>,
    wake: Arc<Wake>,
}

/// The supervisor's side: dropping it stops the thread.
pub struct StopHandle {
    wake: Arc<Wake>,
    /// Dropped after [`Drop::drop`] ran: wakes a [`Stop::wait`].
    _tx: Sender<()>,
}

/// A stop pair for one connection thread.
pub fn pair() -> (StopHandle, Stop) {
    let (tx, rx) = bounded(1);
    let wake = Arc::new(Wake { stopped: AtomicBool::new(false), socket: Mutex::new(None) });
    (StopHandle { wake: wake.clone(), _tx: tx }, Stop { rx, wake })
}

impl Drop for StopHandle {
    fn drop(&mut self) {
        self.wake.stopped.store(true, Ordering::SeqCst);
        if let Some(s) = self.wake.socket.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = s.shutdown(Shutdown::Read);
        }
    }
}

impl Stop {
    /// Whether the thread was asked to stop (the flag is set before the
    /// channel disconnects, so it alone says so).
    pub fn is_stopped(&self) -> bool {
        self.wake.stopped.load(Ordering::SeqCst)
    }

    /// Waits up to `d`; `true` when the thread was asked to stop.
    pub fn wait(&self, d: Duration) -> bool {
        !matches!(self.rx.recv_timeout(d), Err(RecvTimeoutError::Timeout))
    }

    /// Registers the open connection's socket, so that a stop wakes a read
    /// blocked on it, until the returned guard is dropped. If the stop came
    /// first, the socket is shut down at once.
    pub(crate) fn watch(&self, socket: &TcpStream) -> Watch<'_> {
        if let Ok(clone) = socket.try_clone() {
            *self.wake.socket.lock().unwrap_or_else(|p| p.into_inner()) = Some(clone);
        }
        if self.is_stopped() {
            let _ = socket.shutdown(Shutdown::Read);
        }
        Watch(self)
    }
}

/// Unregisters the socket of [`Stop::watch`] when dropped.
pub(crate) struct Watch<'a>(&'a Stop);

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        self.0.wake.socket.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    #[test]
    fn dropping_the_handle_wakes_a_blocked_read_and_a_wait() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let _server = listener.accept().unwrap();
        // Not woken, the read would fail with a timeout instead of EOF.
        client.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let (handle, stop) = pair();
        assert!(!stop.is_stopped());
        let reader = std::thread::spawn(move || {
            let _watch = stop.watch(&client);
            let n = client.read(&mut [0u8; 16]).unwrap();
            (n, stop.is_stopped(), stop.wait(Duration::from_secs(30)))
        });
        std::thread::sleep(Duration::from_millis(100));
        drop(handle);
        let (n, stopped, waited) = reader.join().unwrap();
        assert_eq!((n, stopped, waited), (0, true, true));
    }

    #[test]
    fn a_stop_before_the_watch_shuts_the_socket_at_once() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let _server = listener.accept().unwrap();
        let (handle, stop) = pair();
        drop(handle);
        let _watch = stop.watch(&client);
        assert_eq!(client.read(&mut [0u8; 16]).unwrap(), 0);
    }
}
