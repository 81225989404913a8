//! The `{"encrypt": …}` event envelope: AES-256-CBC with key = SHA-256 of the
//! app's Encrypt Key, base64 of IV ‖ ciphertext, PKCS#7 padding.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use openssl::symm::{Cipher, decrypt as aes_decrypt, encrypt as aes_encrypt};

/// Decrypts an `encrypt` field to the plain event bytes.
pub fn decrypt(encrypt_key: &str, cipher_b64: &str) -> Result<Vec<u8>, String> {
    let buf = STANDARD.decode(cipher_b64.trim()).map_err(|e| format!("not base64: {e}"))?;
    if buf.len() < 32 || buf.len() % 16 != 0 {
        return Err(format!(
            "ciphertext length {} is not a positive multiple of 16 after the IV",
            buf.len()
        ));
    }
    let key = openssl::sha::sha256(encrypt_key.as_bytes());
    let (iv, data) = buf.split_at(16);
    aes_decrypt(Cipher::aes_256_cbc(), &key, Some(iv), data)
        .map_err(|_| "bad padding after decryption".to_owned())
}

/// Encrypts like Feishu does, with a random IV. The gateway never sends
/// encrypted events; tests and the simulator use this to produce them.
pub fn encrypt(encrypt_key: &str, plain: &str) -> String {
    let key = openssl::sha::sha256(encrypt_key.as_bytes());
    let mut iv = [0u8; 16];
    openssl::rand::rand_bytes(&mut iv).expect("OpenSSL RNG works");
    let mut out = iv.to_vec();
    out.extend(
        aes_encrypt(Cipher::aes_256_cbc(), &key, Some(&iv), plain.as_bytes())
            .expect("AES-256-CBC works"),
    );
    STANDARD.encode(out)
}

#[cfg(test)]
pub fn encrypt_for_tests(encrypt_key: &str, plain: &str) -> String {
    encrypt(encrypt_key, plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let c = encrypt("key", "{\"a\":1}");
        assert_eq!(decrypt("key", &c).unwrap(), b"{\"a\":1}");
        assert!(decrypt("key", "!!!").unwrap_err().contains("base64"));
        assert!(
            decrypt("key", &STANDARD.encode([0u8; 20])).unwrap_err().contains("multiple of 16")
        );
        assert!(decrypt("other", &c).is_err());
    }

    /// Produced with the openssl CLI: key = `sha256("test key")`, IV = 16 × 0x07:
    /// `printf 'hello feishu' | openssl enc -aes-256-cbc -K <key> -iv <iv>`.
    #[test]
    fn openssl_cli_vector() {
        let c = "BwcHBwcHBwcHBwcHBwcHBznSWyd8l4LuuWdvG/cTwHA=";
        assert_eq!(decrypt("test key", c).unwrap(), b"hello feishu");
    }
}
