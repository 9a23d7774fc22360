//! The access-log filter expression: comparisons of fields with literals, joined by
//! `and`, `or`, `not` and parentheses, e.g.
//! `response_code >= 500 or (duration > 1000 and method == "POST")`.
//!
//! Parsed once at configure time into a tree whose fields are already resolved, so
//! evaluation per request is a walk over a few nodes. Numbers compare numerically;
//! strings compare as text (`==`, `!=`, and the orderings lexicographically); a
//! missing field equals nothing and differs from everything.

use std::borrow::Cow;
use wasmesh_sdk::ConfigError;

/// A field's value for one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Num(f64),
    Str(Cow<'a, str>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    Num(f64),
    Str(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr<F> {
    Or(Box<Expr<F>>, Box<Expr<F>>),
    And(Box<Expr<F>>, Box<Expr<F>>),
    Not(Box<Expr<F>>),
    Cmp(F, Op, Lit),
}

impl<F: Copy> Expr<F> {
    /// Parses `text`, resolving field names with `field`. Errors are at the expression
    /// itself (callers add the field).
    pub fn parse(text: &str, field: &dyn Fn(&str) -> Option<F>) -> Result<Self, ConfigError> {
        Self::parse_text(text, field).map_err(|m| ConfigError::at("", m))
    }

    fn parse_text(text: &str, field: &dyn Fn(&str) -> Option<F>) -> Result<Self, String> {
        let tokens = tokenize(text)?;
        let mut p = Parser {
            tokens,
            pos: 0,
            field,
        };
        let e = p.or()?;
        match p.tokens.get(p.pos) {
            None => Ok(e),
            Some(t) => Err(format!("unexpected {t:?} after a complete expression")),
        }
    }

    /// The fields the expression reads (so the caller fetches only those).
    pub fn fields(&self, out: &mut Vec<F>) {
        match self {
            Expr::Or(a, b) | Expr::And(a, b) => {
                a.fields(out);
                b.fields(out);
            }
            Expr::Not(a) => a.fields(out),
            Expr::Cmp(f, _, _) => out.push(*f),
        }
    }

    pub fn eval<'v>(&self, value: &dyn Fn(F) -> Value<'v>) -> bool {
        match self {
            Expr::Or(a, b) => a.eval(value) || b.eval(value),
            Expr::And(a, b) => a.eval(value) && b.eval(value),
            Expr::Not(a) => !a.eval(value),
            Expr::Cmp(f, op, lit) => compare(&value(*f), *op, lit),
        }
    }
}

fn compare(v: &Value<'_>, op: Op, lit: &Lit) -> bool {
    use std::cmp::Ordering;
    let ord: Option<Ordering> = match (v, lit) {
        (Value::Null, _) => return op == Op::Ne,
        (Value::Num(a), Lit::Num(b)) => a.partial_cmp(b),
        (Value::Str(a), Lit::Num(b)) => match a.trim().parse::<f64>() {
            Ok(a) => a.partial_cmp(b),
            Err(_) => return op == Op::Ne,
        },
        (Value::Num(a), Lit::Str(b)) => Some(format_num(*a).as_str().cmp(b.as_str())),
        (Value::Str(a), Lit::Str(b)) => Some(a.as_ref().cmp(b.as_str())),
    };
    let Some(ord) = ord else {
        return op == Op::Ne;
    };
    match op {
        Op::Eq => ord == Ordering::Equal,
        Op::Ne => ord != Ordering::Equal,
        Op::Lt => ord == Ordering::Less,
        Op::Le => ord != Ordering::Greater,
        Op::Gt => ord == Ordering::Greater,
        Op::Ge => ord != Ordering::Less,
    }
}

fn format_num(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Num(f64),
    Str(String),
    Op(Op),
    And,
    Or,
    Not,
    Open,
    Close,
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let two = |t: Token| (t, 2);
        let (tok, len) = match c {
            ' ' | '\t' | '\n' => {
                i += 1;
                continue;
            }
            '(' => (Token::Open, 1),
            ')' => (Token::Close, 1),
            '=' if next == Some('=') => two(Token::Op(Op::Eq)),
            '!' if next == Some('=') => two(Token::Op(Op::Ne)),
            '<' if next == Some('=') => two(Token::Op(Op::Le)),
            '>' if next == Some('=') => two(Token::Op(Op::Ge)),
            '&' if next == Some('&') => two(Token::And),
            '|' if next == Some('|') => two(Token::Or),
            '<' => (Token::Op(Op::Lt), 1),
            '>' => (Token::Op(Op::Gt), 1),
            '!' => (Token::Not, 1),
            '"' | '\'' => {
                let end = chars[i + 1..]
                    .iter()
                    .position(|&x| x == c)
                    .ok_or_else(|| format!("unterminated string starting at {i}"))?;
                let s: String = chars[i + 1..i + 1 + end].iter().collect();
                (Token::Str(s), end + 2)
            }
            c if c.is_ascii_digit() || (c == '-' && next.is_some_and(|n| n.is_ascii_digit())) => {
                let len = 1 + chars[i + 1..]
                    .iter()
                    .take_while(|x| x.is_ascii_digit() || **x == '.')
                    .count();
                let s: String = chars[i..i + len].iter().collect();
                let n = s.parse::<f64>().map_err(|_| format!("bad number `{s}`"))?;
                (Token::Num(n), len)
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let len = chars[i..]
                    .iter()
                    .take_while(|x| x.is_ascii_alphanumeric() || **x == '_')
                    .count();
                let s: String = chars[i..i + len].iter().collect();
                let tok = match s.as_str() {
                    "and" => Token::And,
                    "or" => Token::Or,
                    "not" => Token::Not,
                    _ => Token::Ident(s),
                };
                (tok, len)
            }
            other => return Err(format!("unexpected `{other}` at {i}")),
        };
        out.push(tok);
        i += len;
    }
    Ok(out)
}

struct Parser<'f, F> {
    tokens: Vec<Token>,
    pos: usize,
    field: &'f dyn Fn(&str) -> Option<F>,
}

impl<F: Copy> Parser<'_, F> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn or(&mut self) -> Result<Expr<F>, String> {
        let mut e = self.and()?;
        while self.peek() == Some(&Token::Or) {
            self.pos += 1;
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr<F>, String> {
        let mut e = self.unary()?;
        while self.peek() == Some(&Token::And) {
            self.pos += 1;
            e = Expr::And(Box::new(e), Box::new(self.unary()?));
        }
        Ok(e)
    }

    fn unary(&mut self) -> Result<Expr<F>, String> {
        match self.next() {
            Some(Token::Not) => Ok(Expr::Not(Box::new(self.unary()?))),
            Some(Token::Open) => {
                let e = self.or()?;
                match self.next() {
                    Some(Token::Close) => Ok(e),
                    _ => Err("missing `)`".to_string()),
                }
            }
            Some(Token::Ident(name)) => {
                let f = (self.field)(&name).ok_or_else(|| format!("unknown field `{name}`"))?;
                let op = match self.next() {
                    Some(Token::Op(op)) => op,
                    other => {
                        return Err(format!(
                            "expected a comparison after `{name}`, found {other:?}"
                        ))
                    }
                };
                let lit = match self.next() {
                    Some(Token::Num(n)) => Lit::Num(n),
                    Some(Token::Str(s)) => Lit::Str(s),
                    other => {
                        return Err(format!(
                            "expected a number or a quoted string, found {other:?}"
                        ))
                    }
                };
                Ok(Expr::Cmp(f, op, lit))
            }
            other => Err(format!("expected a field, `not` or `(`, found {other:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str) -> Option<u8> {
        match name {
            "response_code" => Some(0),
            "method" => Some(1),
            "duration" => Some(2),
            "missing" => Some(3),
            _ => None,
        }
    }

    fn eval(text: &str, code: f64, method: &str, duration: f64) -> bool {
        let e = Expr::parse(text, &field).unwrap();
        e.eval(&|f| match f {
            0 => Value::Num(code),
            1 => Value::Str(Cow::Owned(method.to_string())),
            2 => Value::Num(duration),
            _ => Value::Null,
        })
    }

    #[test]
    fn comparisons_and_logic() {
        assert!(eval("response_code >= 500", 503.0, "GET", 1.0));
        assert!(!eval("response_code >= 500", 200.0, "GET", 1.0));
        assert!(eval(
            "response_code >= 500 or duration > 1000",
            200.0,
            "GET",
            1500.0
        ));
        assert!(eval(
            "method == 'POST' and not response_code < 400",
            404.0,
            "POST",
            1.0
        ));
        assert!(!eval(
            "method == \"POST\" && response_code == 200",
            200.0,
            "GET",
            1.0
        ));
        assert!(eval(
            "(response_code == 200 || response_code == 201) && duration <= 5",
            201.0,
            "GET",
            5.0
        ));
        assert!(eval("response_code != 200", 0.0, "GET", 0.0));
    }

    #[test]
    fn missing_fields_equal_nothing() {
        assert!(!eval("missing == 'x'", 0.0, "", 0.0));
        assert!(eval("missing != 'x'", 0.0, "", 0.0));
        assert!(!eval("missing > 1", 0.0, "", 0.0));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let err = |t: &str| Expr::parse(t, &field).unwrap_err().message;
        assert!(err("nope == 1").contains("unknown field `nope`"));
        assert!(err("response_code 500").contains("expected a comparison"));
        assert!(err("response_code == ").contains("expected a number"));
        assert!(err("(response_code == 1").contains("missing `)`"));
        assert!(err("method == 'x").contains("unterminated"));
        assert!(err("response_code == 1 1").contains("unexpected"));
    }

    #[test]
    fn fields_are_listed() {
        let e = Expr::parse("response_code > 1 or not duration < 2", &field).unwrap();
        let mut out = Vec::new();
        e.fields(&mut out);
        assert_eq!(out, [0, 2]);
    }
}
