//! Markdown answers → Feishu messages.
//!
//! Plain text when the answer has no formatting, otherwise interactive cards
//! (JSON 2.0, one `markdown` element). Answers beyond Feishu's size limits
//! are split into several messages between blocks: never inside a code block
//! (an oversized one is cut into several fenced blocks) and never inside a
//! table row (an oversized table repeats its header in each part). Tables
//! beyond the per-card limit become aligned monospace blocks. No I/O.

mod blocks;
mod split;
pub mod stream;

use serde_json::json;

pub use blocks::fences_balanced;
pub use split::split;

/// Size limits, in bytes of UTF-8 (Feishu counts the request body).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Markdown per card; the serialised card must also stay under `card_bytes`.
    pub card_markdown_bytes: usize,
    /// Serialised card JSON (Feishu: 30 KB for the request body).
    pub card_bytes: usize,
    /// Text per plain-text message (Feishu allows 150 KB; shorter reads better).
    pub text_bytes: usize,
    /// Markdown tables per card; more are shown as monospace blocks.
    pub tables_per_card: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            card_markdown_bytes: 20_000,
            card_bytes: 28_000,
            text_bytes: 12_000,
            tables_per_card: 5,
        }
    }
}

/// One message to send: Feishu's `msg_type` and `content` (a JSON string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub msg_type: &'static str,
    pub content: String,
}

/// A link shown under the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    pub url: String,
}

/// True when the text uses Markdown that plain text would show badly.
pub fn has_formatting(md: &str) -> bool {
    let inline = ["**", "__", "`", "~~", "]("];
    if inline.iter().any(|m| md.contains(m)) {
        return true;
    }
    md.lines().any(|l| {
        let t = l.trim_start();
        t.starts_with('#')
            || t.starts_with("> ")
            || t.starts_with("- ")
            || t.starts_with("* ")
            || t.starts_with("+ ")
            || is_ordered_item(t)
            || (t.starts_with('|') && t.matches('|').count() >= 2)
    })
}

fn is_ordered_item(t: &str) -> bool {
    let digits = t.chars().take_while(char::is_ascii_digit).count();
    digits > 0 && t[digits..].starts_with(". ")
}

/// Renders an answer: text parts when unformatted, card parts otherwise.
pub fn render(md: &str, links: &[Link], limits: &Limits) -> Vec<Part> {
    let body = with_links(md, links);
    if has_formatting(&body) { cards(&body, limits) } else { texts(&body, limits) }
}

/// The answer as plain-text messages (the fallback when a card is refused).
pub fn texts(md: &str, limits: &Limits) -> Vec<Part> {
    split(md.trim(), limits.text_bytes, usize::MAX)
        .into_iter()
        .map(|t| Part { msg_type: "text", content: json!({ "text": t }).to_string() })
        .collect()
}

/// The answer as card messages.
pub fn cards(md: &str, limits: &Limits) -> Vec<Part> {
    let mut out = Vec::new();
    let mut pending: Vec<String> =
        split(md.trim(), limits.card_markdown_bytes, limits.tables_per_card);
    pending.reverse();
    while let Some(chunk) = pending.pop() {
        let content = card_json(&chunk);
        if content.len() <= limits.card_bytes || chunk.len() <= 64 {
            out.push(Part { msg_type: "interactive", content });
            continue;
        }
        // Escaping made it too big: split it again, in proportion to the
        // overflow. Every piece is smaller than the chunk, so this ends.
        let overhead = card_json("").len();
        let inflated = (content.len() - overhead) as f64 / chunk.len() as f64;
        let room = limits.card_bytes.saturating_sub(overhead) as f64 / inflated * 0.95;
        let budget = (room as usize).clamp(32, chunk.len() - 1);
        let mut again = split(&chunk, budget, limits.tables_per_card);
        if again.len() <= 1 {
            // One block that cannot be cut (a huge table row): send it as is;
            // if Feishu refuses the card, the text fallback takes over.
            out.push(Part { msg_type: "interactive", content });
            continue;
        }
        again.reverse();
        pending.extend(again);
    }
    out
}

/// One card holding `md`.
pub fn card_json(md: &str) -> String {
    json!({
        "schema": "2.0",
        "config": { "update_multi": true },
        "body": { "elements": [ { "tag": "markdown", "content": md } ] },
    })
    .to_string()
}

/// The answer with one `📎` line per attachment link: the one place links
/// are formatted, for new replies and for completed progress cards alike.
pub fn with_links(md: &str, links: &[Link]) -> String {
    let mut out = md.trim_end().to_owned();
    for l in links {
        if !out.is_empty() {
            out.push('\n');
        }
        if l.url.is_empty() {
            out.push_str(&format!("📎 {}", l.name));
        } else {
            out.push_str(&format!("📎 [{}]({})", l.name.replace(['[', ']'], ""), l.url));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::blocks::{Block, blocks, cut_str, opening_line};
    use super::*;
    use serde_json::Value;

    fn text_of(p: &Part) -> String {
        let v: Value = serde_json::from_str(&p.content).unwrap();
        match p.msg_type {
            "text" => v["text"].as_str().unwrap().to_owned(),
            _ => v["body"]["elements"][0]["content"].as_str().unwrap().to_owned(),
        }
    }

    #[test]
    fn plain_answers_are_text() {
        let parts = render("上个月华东区销售额为 1,284 万元。", &[], &Limits::default());
        assert_eq!(
            parts,
            vec![Part {
                msg_type: "text",
                content: r#"{"text":"上个月华东区销售额为 1,284 万元。"}"#.into()
            }]
        );
    }

    #[test]
    fn formatted_answers_are_cards() {
        for md in [
            "**bold**",
            "# Title",
            "- a\n- b",
            "1. one",
            "`x`",
            "| a | b |\n|---|---|\n| 1 | 2 |",
            "[l](https://x)",
            "> q",
        ] {
            let parts = render(md, &[], &Limits::default());
            assert_eq!(parts.len(), 1);
            assert_eq!(parts[0].msg_type, "interactive", "{md}");
            let card: Value = serde_json::from_str(&parts[0].content).unwrap();
            assert_eq!(card["schema"], "2.0");
            assert_eq!(card["config"]["update_multi"], true);
            assert_eq!(text_of(&parts[0]), md);
        }
    }

    #[test]
    fn links_are_appended() {
        let links = [Link { name: "明细.xlsx".into(), url: "https://a.example/f/1".into() }];
        let parts = render("答案", &links, &Limits::default());
        assert_eq!(text_of(&parts[0]), "答案\n📎 [明细.xlsx](https://a.example/f/1)");
        assert_eq!(parts[0].msg_type, "interactive");
    }

    #[test]
    fn blocks_are_recognised() {
        let md = "intro line\n\n```sql\nselect 1;\n\nselect 2;\n```\n| a | b |\n|---|---|\n| 1 | 2 |\ntail";
        assert_eq!(
            blocks(md),
            vec![
                Block::Text("intro line".into()),
                Block::Code {
                    fence: "```sql".into(),
                    body: vec!["select 1;".into(), "".into(), "select 2;".into()]
                },
                Block::Table {
                    header: "| a | b |".into(),
                    sep: "|---|---|".into(),
                    rows: vec!["| 1 | 2 |".into()]
                },
                Block::Text("tail".into()),
            ]
        );
    }

    #[test]
    fn long_answers_split_between_blocks() {
        let para = "这是一段很长的分析文字。".repeat(100); // ~3.6 KB
        let code = format!("```python\n{}```", "print('x')\n".repeat(400)); // ~4.4 KB
        let table = format!("| 省份 | 销售额 |\n|---|---|\n{}", "| 上海 | 512 |\n".repeat(300));
        let md = format!("{para}\n\n{code}\n\n{table}\n\n{para}");
        let limits = Limits { card_markdown_bytes: 3000, card_bytes: 6000, ..Limits::default() };
        let parts = render(&md, &[], &limits);
        assert!(parts.len() > 4, "{}", parts.len());
        let mut rows = 0;
        let mut prints = 0;
        for p in &parts {
            assert!(p.content.len() <= 6000, "{}", p.content.len());
            let t = text_of(p);
            assert!(fences_balanced(&t), "{t}");
            for l in t.lines() {
                if l.starts_with('|') {
                    assert!(
                        l == "| 上海 | 512 |" || l == "| 省份 | 销售额 |" || l == "|---|---|",
                        "broken row {l:?}"
                    );
                }
            }
            // Every part with table rows has the header first.
            if t.contains("| 上海 | 512 |") {
                assert!(t.contains("| 省份 | 销售额 |\n|---|---|"));
            }
            rows += t.matches("| 上海 | 512 |").count();
            prints += t.matches("print('x')").count();
        }
        assert_eq!(rows, 300);
        assert_eq!(prints, 400);
    }

    #[test]
    fn extra_tables_become_monospace_blocks() {
        let table = "| 区 | 额 |\n|---|---|\n| 华东 | 1 |";
        let md = [table; 7].join("\n\n");
        let parts = render(&md, &[], &Limits::default());
        assert_eq!(parts.len(), 1);
        let t = text_of(&parts[0]);
        assert_eq!(t.matches("|---|---|").count(), 5);
        assert_eq!(t.matches("```").count(), 4);
        assert!(t.contains("区    额\n----  --\n华东  1"), "{t}");
    }

    #[test]
    fn huge_single_line_is_cut_at_char_boundaries() {
        let md = "数".repeat(10_000);
        let parts = texts(&md, &Limits { text_bytes: 1000, ..Limits::default() });
        assert!(parts.len() >= 30);
        assert!(parts.iter().all(|p| text_of(p).len() <= 1000));
        let joined: String = parts.iter().map(text_of).collect();
        assert_eq!(joined, md);
    }

    /// Found by the `render` fuzz target: a shorter fence inside a longer
    /// one is content, not a fence.
    #[test]
    fn fuzz_nested_shorter_fence_is_content() {
        let md = "\n&\n~~~~\n~~~";
        let parts = render(md, &[], &Limits::default());
        let t = text_of(&parts[0]);
        assert_eq!(t, "&\n\n~~~~\n~~~\n~~~~");
        assert!(fences_balanced(&t));
        assert!(!fences_balanced("```\nx"));
        assert!(!fences_balanced("````\n```"));
        assert!(fences_balanced("````\n```\n`````"));
        assert!(!fences_balanced("```\n```python"), "a closing fence has no info string");
    }

    /// Found by the `render` fuzz target: a table cell with backticks,
    /// shown as a monospace block, must not close that block.
    #[test]
    fn fuzz_backticks_in_a_degraded_table_stay_inside() {
        let table = "| a | b |\n|---|---|\n| ```` | x |";
        let md = [table; 3].join("\n\n");
        let limits = Limits { tables_per_card: 1, ..Limits::default() };
        let t = text_of(&render(&md, &[], &limits)[0]);
        assert!(fences_balanced(&t), "{t}");
        assert!(t.contains("`````\na     b"), "{t}");
    }

    /// The small limits the fuzz target found bugs with.
    fn tight() -> Limits {
        Limits { card_markdown_bytes: 600, card_bytes: 1400, text_bytes: 500, tables_per_card: 2 }
    }

    /// Found by the `render` fuzz target (a timeout): text that JSON escaping
    /// inflates sixfold (control characters) with tight limits looped forever.
    #[test]
    fn fuzz_escaping_heavy_text_terminates() {
        let md = format!("`{}", "\0".repeat(220));
        let limits = tight();
        let parts = render(&md, &[], &limits);
        assert!(parts.iter().all(|p| p.content.len() <= 1400), "{parts:?}");
        let huge_row = format!("| a |\n|---|\n| {} |", "x".repeat(3000));
        let parts = cards(&huge_row, &limits);
        assert_eq!(parts.len(), 1, "an uncuttable row is sent whole");
    }

    /// Found by the `render` fuzz target: a huge info string on the opening
    /// fence made every part too big.
    #[test]
    fn fuzz_huge_info_string_is_shortened() {
        let md = format!("``````{}```\nbody", "\0".repeat(300));
        let limits = tight();
        for p in render(&md, &[], &limits) {
            assert!(p.content.len() <= 1400);
        }
        assert_eq!(opening_line("```python  extra", "```"), "```python");
    }

    /// Found by the `render` fuzz target: cutting a long line right before
    /// a run of backticks turned the run into a code fence.
    #[test]
    fn fuzz_cut_never_starts_a_fence() {
        let line = format!("{}``````````{}", "a".repeat(95), "b".repeat(200));
        for piece in cut_str(&line, 100).iter().skip(1) {
            assert!(!piece.trim_start().starts_with(['`', '~']), "{piece:?}");
        }
        assert_eq!(cut_str(&line, 100).concat(), line);
        let md = format!("**x** {line}");
        let limits = Limits {
            card_markdown_bytes: 100,
            card_bytes: 1000,
            text_bytes: 100,
            tables_per_card: 2,
        };
        assert!(render(&md, &[], &limits).iter().all(|p| fences_balanced(&text_of(p))));
        let all_ticks = "`".repeat(300);
        assert_eq!(cut_str(&all_ticks, 100).concat(), all_ticks);
    }

    #[test]
    fn unclosed_fence_is_closed() {
        let parts = render("```\nselect 1", &[], &Limits::default());
        assert_eq!(text_of(&parts[0]), "```\nselect 1\n```");
    }

    #[test]
    fn escaping_heavy_text_still_fits() {
        let md = format!("**x**\n\n{}", "\"\\\n".repeat(5000));
        let limits = Limits::default();
        for p in render(&md, &[], &limits) {
            assert!(p.content.len() <= limits.card_bytes);
        }
    }
}
