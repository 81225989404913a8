//! Packing blocks into parts under a size limit, and tables beyond the
//! per-card limit as aligned monospace blocks (width counts CJK as two).
//! No I/O.

use super::blocks::{Block, blocks};

/// A table as an aligned monospace block (for tables beyond the card limit).
pub fn table_as_code(header: &str, rows: &[String]) -> Block {
    let cells = |row: &str| -> Vec<String> {
        row.trim().trim_matches('|').split('|').map(|c| c.trim().to_owned()).collect()
    };
    let all: Vec<Vec<String>> =
        std::iter::once(cells(header)).chain(rows.iter().map(|r| cells(r))).collect();
    let cols = all.iter().map(Vec::len).max().unwrap_or(0);
    let width = |s: &str| s.chars().map(|c| if c.is_ascii() { 1 } else { 2 }).sum::<usize>();
    let widths: Vec<usize> = (0..cols)
        .map(|i| all.iter().filter_map(|r| r.get(i)).map(|c| width(c)).max().unwrap_or(0))
        .collect();
    let line = |r: &Vec<String>| {
        (0..cols)
            .map(|i| {
                let c = r.get(i).map_or("", String::as_str);
                format!("{c}{}", " ".repeat(widths[i] - width(c)))
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut body = vec![line(&all[0])];
    body.push(widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("  "));
    body.extend(all[1..].iter().map(line));
    // A fence longer than any run of backticks in the cells, so no cell can close it.
    let longest = body
        .iter()
        .map(|l| l.split(|c| c != '`').map(str::len).max().unwrap_or(0))
        .max()
        .unwrap_or(0);
    Block::Code { fence: "`".repeat(longest.max(2) + 1), body }
}

/// Splits Markdown into parts of at most `max` bytes, packing whole blocks;
/// at most `tables` Markdown tables per part (the rest become monospace).
pub fn split(md: &str, max: usize, tables: usize) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut cur_tables = 0;
    for block in blocks(md) {
        let pieces = if block.render().len() > max { block.cut(max) } else { vec![block] };
        for piece in pieces {
            let text = piece.render();
            if !cur.is_empty() && cur.len() + 2 + text.len() > max {
                parts.push(std::mem::take(&mut cur));
                cur_tables = 0;
            }
            let text = match piece {
                Block::Table { header, rows, .. } if cur_tables >= tables => {
                    let code = table_as_code(&header, &rows).render();
                    if code.len() > max { text } else { code }
                }
                Block::Table { .. } => {
                    cur_tables += 1;
                    text
                }
                _ => text,
            };
            if !cur.is_empty() {
                cur.push_str("\n\n");
            }
            cur.push_str(&text);
        }
    }
    if !cur.is_empty() || parts.is_empty() {
        parts.push(cur);
    }
    parts
}
