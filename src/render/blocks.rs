//! The block model of an answer: prose, fenced code and tables, each a
//! unit that is never cut in two unless it alone is too big, and then cut
//! so that fences stay balanced and table rows whole. No I/O.

/// A unit that is never cut in two (except when it alone is too big).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Block {
    /// Lines of prose, lists, quotes, headings.
    Text(String),
    /// A fenced code block: opening fence line, body lines, closing fence.
    Code { fence: String, body: Vec<String> },
    /// Header row, separator row, data rows.
    Table { header: String, sep: String, rows: Vec<String> },
}

fn is_table_row(l: &str) -> bool {
    let t = l.trim();
    t.starts_with('|') && t.len() > 1
}

fn is_table_sep(l: &str) -> bool {
    let t = l.trim();
    is_table_row(t) && t.chars().all(|c| matches!(c, '|' | '-' | ':' | ' '))
}

/// The fence that opens a code block (``` or ~~~, three or more), if `l` is one.
fn fence_of(l: &str) -> Option<String> {
    let t = l.trim_start();
    for ch in ['`', '~'] {
        let n = t.chars().take_while(|c| *c == ch).count();
        if n >= 3 {
            return Some(ch.to_string().repeat(n));
        }
    }
    None
}

/// True when every code fence that opens is closed (CommonMark: a closing
/// fence uses the same character, at least as many, and no info string).
pub fn fences_balanced(md: &str) -> bool {
    let mut open: Option<String> = None;
    for l in md.lines() {
        match (&open, fence_of(l)) {
            (None, Some(f)) => open = Some(f),
            (Some(o), Some(f)) if closes(o, &f, l) => open = None,
            _ => {}
        }
    }
    open.is_none()
}

/// Whether line `l`, which starts with fence `f`, closes the block opened by `open`.
fn closes(open: &str, f: &str, l: &str) -> bool {
    f.starts_with(open) && l.trim().len() == f.len()
}

/// The opening fence with at most a short language tag (the only part of
/// an info string a reader sees), so that it always fits a message.
pub fn opening_line(l: &str, fence: &str) -> String {
    let info = l.trim_start()[fence.len()..].trim();
    let lang: String = info
        .split_whitespace()
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| *c != '`')
        .take(32)
        .collect();
    format!("{fence}{lang}")
}

pub fn blocks(md: &str) -> Vec<Block> {
    let lines: Vec<&str> = md.lines().collect();
    let mut out = Vec::new();
    let mut text: Vec<&str> = Vec::new();
    let flush = |text: &mut Vec<&str>, out: &mut Vec<Block>| {
        while text.last().is_some_and(|l| l.trim().is_empty()) {
            text.pop();
        }
        if !text.is_empty() {
            out.push(Block::Text(text.join("\n")));
        }
        text.clear();
    };
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        if let Some(fence) = fence_of(l) {
            flush(&mut text, &mut out);
            let mut body = Vec::new();
            i += 1;
            while i < lines.len()
                && !fence_of(lines[i]).is_some_and(|f| closes(&fence, &f, lines[i]))
            {
                body.push(lines[i].to_owned());
                i += 1;
            }
            i += 1; // the closing fence (or the end of an unclosed block)
            out.push(Block::Code { fence: opening_line(l, &fence), body });
            continue;
        }
        if is_table_row(l) && lines.get(i + 1).is_some_and(|n| is_table_sep(n)) {
            flush(&mut text, &mut out);
            let (header, sep) = (l.to_owned(), lines[i + 1].to_owned());
            i += 2;
            let mut rows = Vec::new();
            while i < lines.len() && is_table_row(lines[i]) {
                rows.push(lines[i].to_owned());
                i += 1;
            }
            out.push(Block::Table { header, sep, rows });
            continue;
        }
        if l.trim().is_empty() {
            flush(&mut text, &mut out);
        } else {
            text.push(l);
        }
        i += 1;
    }
    flush(&mut text, &mut out);
    out
}

fn close_fence(open: &str) -> String {
    let ch = open.chars().next().unwrap_or('`');
    ch.to_string().repeat(open.chars().take_while(|c| *c == ch).count())
}

impl Block {
    pub fn render(&self) -> String {
        match self {
            Block::Text(t) => t.clone(),
            Block::Code { fence, body } => {
                let mut s = fence.clone();
                for l in body {
                    s.push('\n');
                    s.push_str(l);
                }
                s.push('\n');
                s.push_str(&close_fence(fence));
                s
            }
            Block::Table { header, sep, rows } => {
                let mut s = format!("{header}\n{sep}");
                for r in rows {
                    s.push('\n');
                    s.push_str(r);
                }
                s
            }
        }
    }

    /// Cuts a block that alone exceeds `max` bytes into pieces that fit.
    pub fn cut(self, max: usize) -> Vec<Block> {
        match self {
            Block::Text(t) => {
                let mut out = Vec::new();
                let mut cur = String::new();
                for line in t.lines() {
                    for piece in cut_str(line, max) {
                        if !cur.is_empty() && cur.len() + 1 + piece.len() > max {
                            out.push(Block::Text(std::mem::take(&mut cur)));
                        }
                        if !cur.is_empty() {
                            cur.push('\n');
                        }
                        cur.push_str(piece);
                    }
                }
                if !cur.is_empty() {
                    out.push(Block::Text(cur));
                }
                out
            }
            Block::Code { fence, body } => {
                let overhead = fence.len() + close_fence(&fence).len() + 2;
                let room = max.saturating_sub(overhead).max(16);
                let mut out = Vec::new();
                let mut cur: Vec<String> = Vec::new();
                let mut size = 0;
                for line in body {
                    for piece in cut_str(&line, room) {
                        if !cur.is_empty() && size + 1 + piece.len() > room {
                            out.push(Block::Code {
                                fence: fence.clone(),
                                body: std::mem::take(&mut cur),
                            });
                            size = 0;
                        }
                        size += piece.len() + 1;
                        cur.push(piece.to_owned());
                    }
                }
                if !cur.is_empty() || out.is_empty() {
                    out.push(Block::Code { fence, body: cur });
                }
                out
            }
            Block::Table { header, sep, rows } => {
                let overhead = header.len() + sep.len() + 2;
                let room = max.saturating_sub(overhead).max(16);
                let mut out = Vec::new();
                let mut cur: Vec<String> = Vec::new();
                let mut size = 0;
                for row in rows {
                    if !cur.is_empty() && size + 1 + row.len() > room {
                        out.push(Block::Table {
                            header: header.clone(),
                            sep: sep.clone(),
                            rows: std::mem::take(&mut cur),
                        });
                        size = 0;
                    }
                    size += row.len() + 1;
                    cur.push(row);
                }
                if !cur.is_empty() || out.is_empty() {
                    out.push(Block::Table { header, sep, rows: cur });
                }
                out
            }
        }
    }
}

/// Cuts a string into pieces of at most `max` bytes at char boundaries.
/// No piece after the first starts (after spaces) with a backtick or tilde,
/// so that a cut can never create a code fence.
pub fn cut_str(s: &str, max: usize) -> Vec<&str> {
    let max = max.max(4);
    let mut out = Vec::new();
    let mut rest = s;
    while rest.len() > max {
        let at = cut_point(rest, max);
        out.push(&rest[..at]);
        rest = &rest[at..];
    }
    out.push(rest);
    out
}

fn cut_point(rest: &str, max: usize) -> usize {
    let safe =
        |c: usize| rest.is_char_boundary(c) && !rest[c..].trim_start().starts_with(['`', '~']);
    let mut at = max;
    while !rest.is_char_boundary(at) {
        at -= 1;
    }
    if let Some(c) = (1..=at).rev().take(256).find(|c| safe(*c)) {
        return c;
    }
    // A long run of fence characters: cut after it instead.
    (at..rest.len()).find(|c| safe(*c)).unwrap_or(rest.len())
}
