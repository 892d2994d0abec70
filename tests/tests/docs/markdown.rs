//! Finding the commands of a Markdown file, and matching what a command printed against what
//! the file says it prints.
//!
//! A *tested block* is a ```` ```console ```` fence on the line right after a marker comment:
//!
//! - `<!-- tested -->`: every command in the block must exit 0;
//! - `<!-- tested: fails -->`: every command in the block must exit non-zero (a refusal the
//!   docs show on purpose);
//! - `<!-- untested: <why> -->`: not run; the reason is there for the reader and the reviewer.
//!
//! Inside a console block, a line starting with `$ ` starts a command. A command goes on over
//! lines ending in `\` and over the body of each here-document it opens (`<<'EOF'` … `EOF`).
//! Every other line, up to the next command, is output the command shows.
//!
//! Shown output is matched loosely but in order: each non-blank shown line must match a whole
//! line of the real output (after earlier shown lines matched), where `…` stands for any text,
//! a number for any number, and a run of spaces for any run of whitespace.

use regex::Regex;

/// What the marker before a console block says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Marker {
    /// Run every command; each must exit 0.
    Tested,
    /// Run every command; each must exit non-zero.
    Fails,
    /// Not run, for the reason given.
    Untested(String),
    /// No marker at all.
    None,
}

/// One command of a console block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Command {
    /// The 1-based line of its `$ `.
    pub(crate) line: usize,
    /// The command as bash reads it: continuation lines and here-document bodies included.
    pub(crate) script: String,
    /// The output lines the doc shows after it (blank lines dropped).
    pub(crate) shown: Vec<String>,
}

/// A fenced block of a Markdown file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Block {
    /// The 1-based line of its opening fence.
    pub(crate) line: usize,
    /// The fence's info string (`console`, `yaml`, …), empty when none.
    pub(crate) lang: String,
    /// The marker comment on the line before the fence.
    pub(crate) marker: Marker,
    /// Its commands (console blocks only).
    pub(crate) commands: Vec<Command>,
}

/// Every fenced block of `text`, in order.
pub(crate) fn blocks(text: &str) -> Vec<Block> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(lang) = lines[i].trim_start().strip_prefix("```") else {
            i += 1;
            continue;
        };
        let lang = lang.trim().to_owned();
        let marker = i
            .checked_sub(1)
            .map_or(Marker::None, |prev| marker(lines[prev]));
        let start = i;
        let mut end = i + 1;
        while end < lines.len() && lines[end].trim() != "```" {
            end += 1;
        }
        let body = &lines[start + 1..end.min(lines.len())];
        let commands = if lang == "console" {
            commands(body, start + 2)
        } else {
            Vec::new()
        };
        out.push(Block {
            line: start + 1,
            lang,
            marker,
            commands,
        });
        i = end + 1;
    }
    out
}

fn marker(line: &str) -> Marker {
    let Some(inner) = line
        .trim()
        .strip_prefix("<!--")
        .and_then(|l| l.strip_suffix("-->"))
    else {
        return Marker::None;
    };
    let (word, rest) = inner.split_once(':').unwrap_or((inner, ""));
    match (word.trim(), rest.trim()) {
        ("tested", "") => Marker::Tested,
        ("tested", "fails") => Marker::Fails,
        ("untested", why) if !why.is_empty() => Marker::Untested(why.to_owned()),
        _ => Marker::None,
    }
}

/// Splits a console block's body (whose first line is line `first` of the file) into
/// commands and their shown output.
fn commands(body: &[&str], first: usize) -> Vec<Command> {
    let heredoc =
        Regex::new(r#"<<-?\s*(['"]?)([A-Za-z_][A-Za-z0-9_]*)(['"]?)"#).expect("a valid regex");
    let mut out: Vec<Command> = Vec::new();
    let mut i = 0;
    while i < body.len() {
        let Some(text) = body[i].strip_prefix("$ ") else {
            if let Some(cmd) = out.last_mut()
                && !body[i].trim().is_empty()
            {
                cmd.shown.push(body[i].trim().to_owned());
            }
            i += 1;
            continue;
        };
        let line = first + i;
        let mut script = text.to_owned();
        i += 1;
        while script.ends_with('\\') && i < body.len() {
            script.push('\n');
            script.push_str(body[i]);
            i += 1;
        }
        let delimiters: Vec<String> = heredoc
            .captures_iter(&script)
            .map(|c| c[2].to_owned())
            .collect();
        for delimiter in delimiters {
            while i < body.len() {
                script.push('\n');
                script.push_str(body[i]);
                i += 1;
                if body[i - 1].trim() == delimiter {
                    break;
                }
            }
        }
        out.push(Command {
            line,
            script,
            shown: Vec::new(),
        });
    }
    out
}

/// A shown output line as a regex over one whole (trimmed) line of real output.
pub(crate) fn pattern(shown: &str) -> Regex {
    let mut re = String::from("^");
    let mut chars = shown.trim().chars().peekable();
    while let Some(c) = chars.next() {
        if c == '…' {
            re.push_str(".*");
        } else if c.is_whitespace() {
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            re.push_str(r"\s+");
        } else if c.is_ascii_digit() {
            while chars
                .peek()
                .is_some_and(|c| c.is_ascii_digit() || *c == '.' || *c == ',')
            {
                chars.next();
            }
            re.push_str(r"\d[\d.,]*");
        } else {
            re.push_str(&regex::escape(&c.to_string()));
        }
    }
    re.push('$');
    Regex::new(&re).expect("an escaped pattern is a valid regex")
}

/// Matches the shown lines against the real output, in order. On a mismatch, returns the
/// first shown line that matched nothing after the lines before it. A shown line that is only
/// `…` skips any number of output lines (none too).
pub(crate) fn unmatched<'a>(shown: &'a [String], actual: &str) -> Option<&'a str> {
    let lines: Vec<&str> = actual.lines().map(str::trim).collect();
    let mut at = 0;
    for expected in shown {
        // A line that is only `…` stands for any number of lines, none included.
        if expected.trim() == "…" {
            continue;
        }
        let re = pattern(expected);
        match lines[at..].iter().position(|l| re.is_match(l)) {
            Some(found) => at += found + 1,
            None => return Some(expected),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_markers_commands_heredocs_and_output() {
        let doc = "intro\n\
            <!-- tested -->\n\
            ```console\n\
            $ echo a \\\n  b\n\
            a b\n\
            \n\
            $ cat <<'EOF'\n\
            x\n\
            EOF\n\
            x\n\
            ```\n\
            <!-- untested: needs docker -->\n\
            ```console\n\
            $ docker build .\n\
            ```\n\
            <!-- tested: fails -->\n\
            ```console\n\
            $ false\n\
            ```\n\
            ```yaml\n\
            a: 1\n\
            ```\n";
        let blocks = blocks(doc);
        assert_eq!(blocks.len(), 4);
        assert_eq!(blocks[0].marker, Marker::Tested);
        assert_eq!(blocks[0].line, 3);
        let cmds = &blocks[0].commands;
        assert_eq!(cmds[0].script, "echo a \\\n  b");
        assert_eq!(cmds[0].shown, ["a b"]);
        assert_eq!(cmds[0].line, 4);
        assert_eq!(cmds[1].script, "cat <<'EOF'\nx\nEOF");
        assert_eq!(cmds[1].shown, ["x"]);
        assert_eq!(
            blocks[1].marker,
            Marker::Untested("needs docker".to_owned())
        );
        assert_eq!(blocks[2].marker, Marker::Fails);
        assert_eq!(blocks[3].lang, "yaml");
        assert_eq!(blocks[3].marker, Marker::None);
        assert!(blocks[3].commands.is_empty());
    }

    #[test]
    fn numbers_spaces_and_ellipses_are_loose_the_rest_is_exact() {
        let p = pattern("finished link/x/crawl-17: 2 pages in 0.9 s (2 pages/s)");
        assert!(p.is_match("finished link/x/crawl-1795668712: 5 pages in 12.5 s (10 pages/s)"));
        assert!(!p.is_match("finished wandering/x/crawl-1: 5 pages in 1 s (1 pages/s)"));
        let p = pattern("NAME   SPIDER PHASE");
        assert!(p.is_match("NAME              SPIDER   PHASE"));
        assert!(!p.is_match("NAME SPIDER PHASE AGE"), "a whole line");
        let p = pattern("test123456-link   link   …");
        assert!(p.is_match("test123456-link   link                 3s"));
        assert!(!p.is_match("test123456-link   wandering   3s"));
    }

    /// Regression: a lone `…` before the interesting line used to swallow that very line when
    /// it came first in the output (a fresh Kafka topic).
    #[test]
    fn a_lone_ellipsis_may_stand_for_no_line() {
        let shown = vec!["…".to_owned(), "a 1".to_owned(), "…".to_owned()];
        assert_eq!(unmatched(&shown, "a 7\nb 2\n"), None);
        assert_eq!(unmatched(&shown, "x\na 7\n"), None);
        assert_eq!(unmatched(&shown, "b 2\n"), Some("a 1"));
    }

    #[test]
    fn shown_lines_match_in_order() {
        let shown = vec!["b".to_owned(), "d".to_owned()];
        assert_eq!(unmatched(&shown, "a\nb\nc\nd\n"), None);
        assert_eq!(unmatched(&shown, "d\nb\n"), Some("d"));
        assert_eq!(unmatched(&[], "anything"), None);
    }
}
