//! Text from outside (a registry's answers and headers, a credential helper's output, names
//! inside a wasm module) made safe to print: control characters escaped, length bounded.
//!
//! A terminal obeys escape sequences wherever they come from: `ESC ] 0 ; … BEL` retitles the
//! window, `ESC [ 2 J` clears it, and a crafted sequence can hide or fake text. Every string weir
//! did not write itself goes through [`escape`] (or [`quote`], which also cuts it short) before it
//! reaches stderr, stdout or `--json`; `main` runs the whole error chain through [`escape_lines`]
//! as a last line of defense.

/// The most characters of foreign text one message quotes (a registry's error body, say).
pub const QUOTE_LIMIT: usize = 300;

/// `text` with every character a terminal could act on written as an escape: C0 controls
/// (`\n`, `\r`, `\t` and ESC included), DEL, C1 controls (U+0080–U+009F, which some terminals
/// read as ESC sequences), and the Unicode bidirectional controls that reorder what is shown.
/// Foreign text is quoted inside one-line messages, so newlines are escaped too.
pub fn escape(text: &str) -> String {
    escape_with(text, false)
}

/// [`escape`], except that `\n` stays a line break: for text that is multi-line by design
/// (an error chain with a list of problems).
pub fn escape_lines(text: &str) -> String {
    escape_with(text, true)
}

/// [`escape`], then cut to `max` characters (counted before escaping) with `...` when longer.
pub fn quote(text: &str, max: usize) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(max).collect();
    let cut = chars.next().is_some();
    let mut out = escape(&head);
    if cut {
        out.push_str("...");
    }
    out
}

/// True for a character [`escape`] rewrites.
pub fn is_unsafe(c: char) -> bool {
    c.is_control() // C0, DEL, C1
        || matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{061C}')
}

fn escape_with(text: &str, keep_newlines: bool) -> String {
    if !text.chars().any(is_unsafe) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' if keep_newlines => out.push('\n'),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x100 && is_unsafe(c) => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if is_unsafe(c) => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_sequences_are_escaped() {
        let hostile = "denied\x1b]0;pwned\x07\x1b[2J\r\nnext\u{9b}31m\x7f\u{202e}gnp.exe";
        let safe = escape(hostile);
        assert!(!safe.chars().any(is_unsafe), "{safe}");
        assert_eq!(
            safe,
            "denied\\x1b]0;pwned\\x07\\x1b[2J\\r\\nnext\\x9b31m\\x7f\\u{202e}gnp.exe"
        );
        assert_eq!(escape_lines("a\nb\x1b"), "a\nb\\x1b");
        assert_eq!(escape("plain text: ok"), "plain text: ok");
        assert_eq!(escape("ünïcödé ✓"), "ünïcödé ✓");
    }

    #[test]
    fn quotes_are_bounded() {
        let long = "x".repeat(10_000);
        let q = quote(&long, QUOTE_LIMIT);
        assert_eq!(q.len(), QUOTE_LIMIT + 3);
        assert!(q.ends_with("..."));
        assert_eq!(quote("short", 10), "short");
        assert_eq!(quote("\x1b[2J", 10), "\\x1b[2J");
    }
}
