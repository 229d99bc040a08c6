//! FQL text to an [`Expr`]: a lexer and a recursive-descent parser, one pass each over the text, with every error
//! naming its column.

use super::ast::{Expr, Func, Needle, Op, Val};
use super::glob::Glob;

/// Why a condition could not be parsed, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct ParseError {
    /// The 1-based column (in characters) where the problem is.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// How deep parentheses, lists, calls and `!` may nest: deeper is refused rather than recursed into.
const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Path(Vec<String>),
    Ident(String),
    Str(String),
    Num(f64),
    Op(Op),
    Not,
    And,
    Or,
    In,
    True,
    False,
    Null,
    Open,
    Close,
    OpenList,
    CloseList,
    Comma,
}

/// The tokens of `text`, each with its column.
fn lex(text: &str) -> Result<Vec<(Token, usize)>, ParseError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    let error = |column: usize, message: String| ParseError { column: column + 1, message };
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        let two = |next: char| chars.get(i + 1) == Some(&next);
        let token = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '(' => Token::Open,
            ')' => Token::Close,
            '[' => Token::OpenList,
            ']' => Token::CloseList,
            ',' => Token::Comma,
            '=' if two('=') => {
                i += 1;
                Token::Op(Op::Eq)
            }
            '=' => Token::Op(Op::Eq),
            '!' if two('=') => {
                i += 1;
                Token::Op(Op::Ne)
            }
            '!' => Token::Not,
            '<' if two('=') => {
                i += 1;
                Token::Op(Op::Le)
            }
            '<' => Token::Op(Op::Lt),
            '>' if two('=') => {
                i += 1;
                Token::Op(Op::Ge)
            }
            '>' => Token::Op(Op::Gt),
            '\'' => {
                let (text, end) = string(&chars, i).map_err(|m| error(start, m))?;
                i = end;
                tokens.push((Token::Str(text), start + 1));
                continue;
            }
            c if c.is_ascii_digit() || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) => {
                let (number, end) = number(&chars, i).map_err(|m| error(start, m))?;
                i = end;
                tokens.push((Token::Num(number), start + 1));
                continue;
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == '\\' => {
                let (segments, end) = path(&chars, i).map_err(|m| error(start, m))?;
                i = end;
                tokens.push((word(segments, chars.get(skip_space(&chars, end)) == Some(&'(')), start + 1));
                continue;
            }
            other => return Err(error(start, format!("unexpected {other:?}"))),
        };
        i += 1;
        tokens.push((token, start + 1));
    }
    Ok(tokens)
}

fn skip_space(chars: &[char], mut i: usize) -> usize {
    while chars.get(i).is_some_and(|c| c.is_whitespace()) {
        i += 1;
    }
    i
}

/// A bare word: a keyword, a function's name (before `(`), or a path.
fn word(segments: Vec<String>, call: bool) -> Token {
    if segments.len() == 1 {
        match segments[0].as_str() {
            "and" => return Token::And,
            "or" => return Token::Or,
            "in" => return Token::In,
            "true" => return Token::True,
            "false" => return Token::False,
            "null" => return Token::Null,
            name if call => return Token::Ident(name.to_owned()),
            _ => {}
        }
    }
    Token::Path(segments)
}

/// A single-quoted string from `chars[start]`, with `\` escaping the next character; returns it and the index after.
fn string(chars: &[char], start: usize) -> Result<(String, usize), String> {
    let mut text = String::new();
    let mut i = start + 1;
    loop {
        match chars.get(i) {
            None => return Err("a string is not closed with '".to_owned()),
            Some('\'') => return Ok((text, i + 1)),
            Some('\\') => match chars.get(i + 1) {
                Some(&c) => {
                    text.push(c);
                    i += 2;
                }
                None => return Err("a string ends with a lone \\".to_owned()),
            },
            Some(&c) => {
                text.push(c);
                i += 1;
            }
        }
    }
}

fn number(chars: &[char], start: usize) -> Result<(f64, usize), String> {
    let mut i = start + 1;
    while chars.get(i).is_some_and(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-')) {
        // A sign belongs to the number only right after an exponent mark.
        if matches!(chars[i], '+' | '-') && !matches!(chars[i - 1], 'e' | 'E') {
            break;
        }
        i += 1;
    }
    let text: String = chars[start..i].iter().collect();
    text.parse::<f64>().map(|n| (n, i)).map_err(|_| format!("{text:?} is not a number"))
}

/// A dotted path from `chars[start]`: segments of `a-z A-Z 0-9 _ -`, any other character escaped with `\`.
fn path(chars: &[char], start: usize) -> Result<(Vec<String>, usize), String> {
    let mut segments = vec![String::new()];
    let mut i = start;
    while let Some(&c) = chars.get(i) {
        match c {
            '\\' => match chars.get(i + 1) {
                Some(&escaped) => {
                    segments.last_mut().expect("one segment at least").push(escaped);
                    i += 2;
                    continue;
                }
                None => return Err("a path ends with a lone \\".to_owned()),
            },
            '.' => {
                if segments.last().is_some_and(String::is_empty) {
                    return Err("a path has an empty part".to_owned());
                }
                segments.push(String::new());
            }
            c if c.is_ascii_alphanumeric() || c == '_' || c == '-' => {
                segments.last_mut().expect("one segment at least").push(c);
            }
            _ => break,
        }
        i += 1;
    }
    if segments.last().is_some_and(String::is_empty) {
        return Err("a path ends with '.'".to_owned());
    }
    Ok((segments, i))
}

/// Parses a whole condition.
pub fn parse(text: &str) -> Result<Expr, ParseError> {
    let tokens = lex(text)?;
    let end = text.chars().count() + 1;
    let mut parser = Parser { tokens, at: 0, end, depth: 0 };
    if parser.tokens.is_empty() {
        return Err(ParseError { column: 1, message: "the condition is empty".to_owned() });
    }
    let expr = parser.or()?;
    match parser.peek() {
        None => Ok(expr),
        Some(token) => Err(parser.error(format!("unexpected {} after a whole condition", describe(token)))),
    }
}

struct Parser {
    tokens: Vec<(Token, usize)>,
    at: usize,
    /// The column after the text, for errors at its end.
    end: usize,
    depth: usize,
}

fn describe(token: &Token) -> String {
    match token {
        Token::Path(p) => format!("the path {}", p.join(".")),
        Token::Ident(name) => format!("{name}("),
        Token::Str(s) => format!("the string {s:?}"),
        Token::Num(n) => format!("the number {n}"),
        Token::Op(op) => format!("{op:?}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at).map(|(t, _)| t)
    }

    fn column(&self) -> usize {
        self.tokens.get(self.at).map_or(self.end, |(_, c)| *c)
    }

    fn error(&self, message: String) -> ParseError {
        ParseError { column: self.column(), message }
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).map(|(t, _)| t.clone());
        self.at += 1;
        token
    }

    fn expect(&mut self, want: &Token, what: &str) -> Result<(), ParseError> {
        match self.peek() {
            Some(t) if t == want => {
                self.at += 1;
                Ok(())
            }
            Some(t) => Err(self.error(format!("expected {what}, found {}", describe(t)))),
            None => Err(self.error(format!("expected {what} at the end"))),
        }
    }

    fn deeper(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        match self.depth > MAX_DEPTH {
            true => Err(self.error(format!("the condition nests deeper than {MAX_DEPTH}"))),
            false => Ok(()),
        }
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.and()?;
        while self.peek() == Some(&Token::Or) {
            self.at += 1;
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.unary()?;
        while self.peek() == Some(&Token::And) {
            self.at += 1;
            left = Expr::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        if self.peek() == Some(&Token::Not) {
            self.at += 1;
            self.deeper()?;
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, ParseError> {
        let left = self.operand()?;
        match self.peek() {
            Some(Token::Op(op)) => {
                let op = *op;
                self.at += 1;
                Ok(Expr::Compare(op, Box::new(left), Box::new(self.operand()?)))
            }
            Some(Token::In) => {
                self.at += 1;
                Ok(Expr::In(Box::new(left), Box::new(self.operand()?)))
            }
            _ => Ok(left),
        }
    }

    fn operand(&mut self) -> Result<Expr, ParseError> {
        let column = self.column();
        let Some(token) = self.next() else {
            return Err(self.error("expected a value, a path or a function at the end".to_owned()));
        };
        Ok(match token {
            Token::Str(s) => Expr::Literal(Val::Str(s)),
            Token::Num(n) => Expr::Literal(Val::Num(n)),
            Token::True => Expr::Literal(Val::Bool(true)),
            Token::False => Expr::Literal(Val::Bool(false)),
            Token::Null => Expr::Literal(Val::Null),
            Token::Path(segments) => Expr::Path(segments),
            Token::Open => {
                self.deeper()?;
                let inner = self.or()?;
                self.expect(&Token::Close, "')'")?;
                self.depth -= 1;
                inner
            }
            Token::OpenList => {
                self.deeper()?;
                let items = self.items(&Token::CloseList, "']'")?;
                self.depth -= 1;
                Expr::List(items)
            }
            Token::Ident(name) => self.call(&name, column)?,
            other => {
                self.at -= 1;
                return Err(self.error(format!("expected a value, a path or a function, found {}", describe(&other))));
            }
        })
    }

    /// Comma-separated conditions up to `close`.
    fn items(&mut self, close: &Token, what: &str) -> Result<Vec<Expr>, ParseError> {
        let mut items = Vec::new();
        if self.peek() == Some(close) {
            self.at += 1;
            return Ok(items);
        }
        loop {
            items.push(self.or()?);
            if self.peek() == Some(&Token::Comma) {
                self.at += 1;
                continue;
            }
            self.expect(close, &format!("',' or {what}"))?;
            return Ok(items);
        }
    }

    fn call(&mut self, name: &str, column: usize) -> Result<Expr, ParseError> {
        let at = |message: String| ParseError { column, message };
        let func = Func::named(name).ok_or_else(|| at(format!("there is no function {name}()")))?;
        self.expect(&Token::Open, "'('")?;
        self.deeper()?;
        let mut args = self.items(&Token::Close, "')'")?;
        self.depth -= 1;
        if args.len() != func.arity() {
            return Err(at(format!("{name}() takes {} arguments, not {}", func.arity(), args.len())));
        }
        if func == Func::Match
            && let Expr::Literal(Val::Str(pattern)) = &args[1]
        {
            // A pattern written in the condition is compiled once, here.
            let glob = Glob::new(pattern).map_err(|why| at(format!("match() pattern {pattern:?}: {why}")))?;
            let subject = args.swap_remove(0);
            return Ok(Expr::Match(Box::new(subject), glob));
        }
        if func == Func::Contains
            && let Expr::Literal(Val::Str(needle)) = &args[1]
        {
            // A substring written in the condition is prepared for searching once, here.
            let needle = Box::new(Needle::new(needle));
            let subject = args.swap_remove(0);
            return Ok(Expr::Contains(Box::new(subject), needle));
        }
        Ok(Expr::Call(func, args))
    }
}

/// A field path as a filter's `fields` writes it (`properties.email`, `properties.product\ 1`): its segments.
pub fn field_path(text: &str) -> Result<Vec<String>, String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return Err("the path is empty".to_owned());
    }
    let (segments, end) = path(&chars, 0)?;
    match end == chars.len() {
        true => Ok(segments),
        false => Err(format!("{:?} at column {} needs a \\ before it", chars[end], end + 1)),
    }
}
