//! `match()`'s glob: `*`, `?`, `[abc]`, `[a-z]` (`[^…]` negated) and `\x`, over the whole string, case-sensitive,
//! compiled once to a regular expression, whose matching is linear in the string whatever the pattern.

/// A compiled glob.
#[derive(Debug, Clone)]
pub struct Glob {
    pattern: String,
    regex: regex::Regex,
}

impl PartialEq for Glob {
    fn eq(&self, other: &Glob) -> bool {
        self.pattern == other.pattern
    }
}

impl Glob {
    /// Compiles `pattern`, or says why it is not a glob.
    pub fn new(pattern: &str) -> Result<Glob, String> {
        let mut out = String::with_capacity(pattern.len() * 2 + 8);
        // `(?s)`: `?` and `*` take any character, a newline too.
        out.push_str("(?s)\\A");
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            match c {
                '*' => out.push_str(".*"),
                '?' => out.push('.'),
                '\\' => match chars.next() {
                    Some(literal) => out.push_str(&regex::escape(&literal.to_string())),
                    None => return Err("it ends with a lone \\".to_owned()),
                },
                '[' => class(&mut chars, &mut out)?,
                other => out.push_str(&regex::escape(&other.to_string())),
            }
        }
        out.push_str("\\z");
        let regex = regex::RegexBuilder::new(&out).size_limit(1 << 20).build().map_err(|e| e.to_string())?;
        Ok(Glob { pattern: pattern.to_owned(), regex })
    }

    /// Whether `text` matches the whole pattern.
    pub fn is_match(&self, text: &str) -> bool {
        self.regex.is_match(text)
    }
}

/// A `[…]` class, after its `[`, as a regex class.
fn class(chars: &mut std::str::Chars<'_>, out: &mut String) -> Result<(), String> {
    out.push('[');
    let mut first = true;
    let mut empty = true;
    loop {
        let Some(c) = chars.next() else { return Err("a '[' is not closed with ']'".to_owned()) };
        match c {
            ']' if !empty => break,
            '^' | '!' if first => out.push('^'),
            '\\' => {
                let literal = chars.next().ok_or("it ends with a lone \\")?;
                out.push_str(&class_literal(literal));
                empty = false;
            }
            '-' if !empty => out.push('-'),
            other => {
                out.push_str(&class_literal(other));
                empty = false;
            }
        }
        first = false;
    }
    out.push(']');
    Ok(())
}

/// One character inside a regex class, escaped when the class syntax would read it.
fn class_literal(c: char) -> String {
    match c {
        '[' | ']' | '\\' | '^' | '-' | '&' | '~' => format!("\\{c}"),
        other => other.to_string(),
    }
}
