//! JMS message selectors: the SQL92 subset of the JMS specification (§3.8.1), parsed once when a
//! consumer subscribes and evaluated against each message's headers and properties.
//!
//! Evaluation uses SQL's three-valued logic: a comparison with a missing property or across
//! types is *unknown*, and a message is selected only when the whole expression is *true*.
//! Integer arithmetic is checked: an overflow (or a division by zero) is an evaluation error,
//! and a message whose evaluation fails is not selected, as JMS treats errors.
//!
//! A hostile selector is an error for the subscriber, never a crash of the broker, because
//! three bounds hold together:
//! - the text is at most [`MAX_LEN`] bytes;
//! - the tree has at most `max_nodes` nodes (literals, identifiers, operators, IN-list
//!   elements; [`DEFAULT_MAX_NODES`] unless the config says otherwise), counted as the parser
//!   goes, so a chain of 100,000 `OR` terms is refused before it is built;
//! - chains of the same operator (`a OR b OR c`, `1 + 2 - 3`) are parsed by a loop into one
//!   node with a list of operands, so the tree's depth, and with it every recursion over the
//!   tree (evaluation, drop, clone), is bounded by the parser's nesting limit ([`MAX_DEPTH`]),
//!   not by the selector's length.
//!
//! A selector that starts with `convert_string_expressions:` (ActiveMQ's prefix, which its
//! STOMP door puts before every SUBSCRIBE's selector) compares a string with a number or a
//! boolean by converting the string to the other side's type: `price > 10` selects a message
//! whose `price` is the string `"15"`, as STOMP headers always are. A string that does not
//! convert (`"15.5"` against the integer `10`, as Java's `Long.valueOf` refuses it) makes the
//! comparison unknown. Only comparisons convert (`=`, `<>`, `<`, `<=`, `>`, `>=`,
//! `BETWEEN`); arithmetic on a string stays unknown. Without the prefix (OpenWire consumers)
//! JMS's rule holds: a string never equals or orders with a number.

use std::fmt;

use store_api::{Message, Value};

/// Deeper nesting (parentheses, `NOT`, unary minus) than this is refused rather than risk the
/// parser's stack; the tree's depth is a small multiple of it.
pub const MAX_DEPTH: usize = 64;
/// Longer selectors are refused; ActiveMQ has no limit, but nothing real comes close.
pub const MAX_LEN: usize = 64 * 1024;
/// Nodes a selector may have unless `limits.max_selector_nodes` says otherwise. ActiveMQ has no
/// such limit; evaluating a selector costs time per message in proportion to its nodes, and a
/// selector of a few hundred message ids (four nodes each) stays far below it.
pub const DEFAULT_MAX_NODES: usize = 10_000;

/// Why a selector does not parse, with the character offset where the problem was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid selector at character {position}: {reason}")]
pub struct SelectorError {
    pub position: usize,
    pub reason: String,
}

/// A parsed selector.
#[derive(Debug, Clone, PartialEq)]
pub struct Selector {
    text: String,
    root: Expr,
    /// `convert_string_expressions:` was given: strings convert in comparisons.
    convert_strings: bool,
}

/// ActiveMQ's selector prefix that turns on string conversion in comparisons.
pub const CONVERT_STRING_EXPRESSIONS: &str = "convert_string_expressions:";

impl Selector {
    /// Parses with the default node limit ([`DEFAULT_MAX_NODES`]).
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        Self::parse_limited(text, DEFAULT_MAX_NODES)
    }

    /// Parses, refusing a selector of more than `max_nodes` nodes.
    pub fn parse_limited(text: &str, max_nodes: usize) -> Result<Selector, SelectorError> {
        parse_bounded(text, MAX_LEN, max_nodes)
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// True when the expression is true for the message (unknown, or an evaluation error such
    /// as an overflow, counts as not selected).
    pub fn matches(&self, message: &Message) -> bool {
        let cx = Eval {
            message,
            convert_strings: self.convert_strings,
        };
        matches!(cx.eval(&self.root), Ok(V::Bool(true)))
    }
}

/// The parse with both size bounds given: the text's length and the tree's node count.
fn parse_bounded(text: &str, max_len: usize, max_nodes: usize) -> Result<Selector, SelectorError> {
    if text.len() > max_len {
        return Err(SelectorError {
            position: max_len,
            reason: format!("longer than {max_len} bytes"),
        });
    }
    let (convert_strings, expression) = match text.strip_prefix(CONVERT_STRING_EXPRESSIONS) {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    // Positions in errors count from after the prefix: a STOMP client, whose selector gets
    // the prefix from the broker, is shown a position in the text it wrote.
    let tokens = lex(expression)?;
    let mut p = Parser {
        tokens,
        pos: 0,
        depth: 0,
        nodes: 0,
        max_nodes,
        end: expression.len(),
    };
    let root = p.expr()?;
    if let Some(t) = p.tokens.get(p.pos) {
        return Err(SelectorError {
            position: t.at,
            reason: format!("unexpected {}", t.tok),
        });
    }
    Ok(Selector {
        text: text.to_owned(),
        root,
        convert_strings,
    })
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

// ---------------------------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Long(i64),
    Double(f64),
    Kw(Kw),
    Op(&'static str),
    LParen,
    RParen,
    Comma,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kw {
    And,
    Or,
    Not,
    Between,
    In,
    Like,
    Escape,
    Is,
    Null,
    True,
    False,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Ident(s) => write!(f, "identifier {s}"),
            Tok::Str(s) => write!(f, "string '{s}'"),
            Tok::Long(n) => write!(f, "number {n}"),
            Tok::Double(n) => write!(f, "number {n}"),
            Tok::Kw(k) => write!(f, "{}", format!("{k:?}").to_uppercase()),
            Tok::Op(o) => write!(f, "'{o}'"),
            Tok::LParen => f.write_str("'('"),
            Tok::RParen => f.write_str("')'"),
            Tok::Comma => f.write_str("','"),
        }
    }
}

#[derive(Debug)]
struct Token {
    tok: Tok,
    at: usize,
}

fn keyword(word: &str) -> Option<Kw> {
    Some(match word.to_ascii_uppercase().as_str() {
        "AND" => Kw::And,
        "OR" => Kw::Or,
        "NOT" => Kw::Not,
        "BETWEEN" => Kw::Between,
        "IN" => Kw::In,
        "LIKE" => Kw::Like,
        "ESCAPE" => Kw::Escape,
        "IS" => Kw::Is,
        "NULL" => Kw::Null,
        "TRUE" => Kw::True,
        "FALSE" => Kw::False,
        _ => return None,
    })
}

fn lex(text: &str) -> Result<Vec<Token>, SelectorError> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |at: usize, reason: String| SelectorError {
        position: at,
        reason,
    };
    while i < chars.len() {
        let (at, c) = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let tok = if c.is_alphabetic() || c == '_' || c == '$' {
            let start = i;
            while i < chars.len()
                && (chars[i].1.is_alphanumeric() || matches!(chars[i].1, '_' | '$' | '.'))
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().map(|(_, c)| c).collect();
            out.push(Token {
                tok: keyword(&word).map_or(Tok::Ident(word), Tok::Kw),
                at,
            });
            continue;
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(|(_, d)| d.is_ascii_digit()))
        {
            let start = i;
            let hex = c == '0'
                && chars
                    .get(i + 1)
                    .is_some_and(|(_, x)| *x == 'x' || *x == 'X');
            if hex {
                i += 2;
                while i < chars.len() && chars[i].1.is_ascii_hexdigit() {
                    i += 1;
                }
                let digits: String = chars[start + 2..i].iter().map(|(_, c)| c).collect();
                let n = i64::from_str_radix(&digits, 16)
                    .map_err(|e| err(at, format!("bad hexadecimal number: {e}")))?;
                if i < chars.len() && matches!(chars[i].1, 'l' | 'L') {
                    i += 1;
                }
                out.push(Token {
                    tok: Tok::Long(n),
                    at,
                });
                continue;
            }
            let mut float = false;
            while i < chars.len() {
                let d = chars[i].1;
                if d.is_ascii_digit() {
                    i += 1;
                } else if d == '.' && !float {
                    float = true;
                    i += 1;
                } else if matches!(d, 'e' | 'E') {
                    float = true;
                    i += 1;
                    if i < chars.len() && matches!(chars[i].1, '+' | '-') {
                        i += 1;
                    }
                } else {
                    break;
                }
            }
            let literal: String = chars[start..i].iter().map(|(_, c)| c).collect();
            let tok = if float {
                Tok::Double(
                    literal
                        .parse()
                        .map_err(|_| err(at, format!("bad number {literal}")))?,
                )
            } else {
                Tok::Long(
                    literal
                        .parse()
                        .map_err(|_| err(at, format!("number {literal} is out of range")))?,
                )
            };
            // Java literal suffixes.
            if i < chars.len() && matches!(chars[i].1, 'l' | 'L' | 'd' | 'D' | 'f' | 'F') {
                i += 1;
            }
            out.push(Token { tok, at });
            continue;
        } else if c == '\'' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(err(at, "unterminated string".into())),
                    Some((_, '\'')) if chars.get(i + 1).is_some_and(|(_, n)| *n == '\'') => {
                        s.push('\'');
                        i += 2;
                    }
                    Some((_, '\'')) => {
                        i += 1;
                        break;
                    }
                    Some((_, ch)) => {
                        s.push(*ch);
                        i += 1;
                    }
                }
            }
            out.push(Token {
                tok: Tok::Str(s),
                at,
            });
            continue;
        } else {
            let next = chars.get(i + 1).map(|(_, n)| *n);
            let (tok, len) = match (c, next) {
                ('<', Some('>')) => (Tok::Op("<>"), 2),
                ('<', Some('=')) => (Tok::Op("<="), 2),
                ('>', Some('=')) => (Tok::Op(">="), 2),
                ('!', Some('=')) => (Tok::Op("<>"), 2),
                ('=', Some('=')) => (Tok::Op("="), 2),
                ('=', _) => (Tok::Op("="), 1),
                ('<', _) => (Tok::Op("<"), 1),
                ('>', _) => (Tok::Op(">"), 1),
                ('+', _) => (Tok::Op("+"), 1),
                ('-', _) => (Tok::Op("-"), 1),
                ('*', _) => (Tok::Op("*"), 1),
                ('/', _) => (Tok::Op("/"), 1),
                ('(', _) => (Tok::LParen, 1),
                (')', _) => (Tok::RParen, 1),
                (',', _) => (Tok::Comma, 1),
                _ => return Err(err(at, format!("unexpected character {c:?}"))),
            };
            i += len;
            tok
        };
        out.push(Token { tok, at });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Parser

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Lit(V),
    Ident(String),
    Neg(Box<Expr>),
    Not(Box<Expr>),
    /// `a AND b AND c`: one node for the whole chain, so its depth does not grow with it.
    And(Vec<Expr>),
    /// `a OR b OR c`, likewise.
    Or(Vec<Expr>),
    Cmp(&'static str, Box<Expr>, Box<Expr>),
    /// `first op1 e1 op2 e2 ...`, applied left to right (`+`/`-` or `*`/`/`, one level of
    /// precedence per node).
    Arith {
        first: Box<Expr>,
        rest: Vec<(&'static str, Expr)>,
    },
    Between {
        negated: bool,
        value: Box<Expr>,
        low: Box<Expr>,
        high: Box<Expr>,
    },
    In {
        negated: bool,
        value: Box<Expr>,
        set: Vec<V>,
    },
    Like {
        negated: bool,
        value: Box<Expr>,
        pattern: Vec<char>,
        escape: Option<char>,
    },
    IsNull {
        negated: bool,
        value: Box<Expr>,
    },
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
    /// Nodes built so far, counted before each is parsed so that an oversized selector stops
    /// the parse as soon as it crosses `max_nodes`.
    nodes: usize,
    max_nodes: usize,
    /// Where the text ends, for errors at the end.
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos).map(|t| &t.tok)
    }

    fn at(&self) -> usize {
        self.tokens.get(self.pos).map_or(self.end, |t| t.at)
    }

    fn error<T>(&self, reason: impl Into<String>) -> Result<T, SelectorError> {
        Err(SelectorError {
            position: self.at(),
            reason: reason.into(),
        })
    }

    fn eat(&mut self, tok: &Tok) -> bool {
        if self.peek() == Some(tok) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_kw(&mut self, kw: Kw) -> bool {
        self.eat(&Tok::Kw(kw))
    }

    fn expect(&mut self, tok: Tok) -> Result<(), SelectorError> {
        if self.eat(&tok) {
            Ok(())
        } else {
            let found = self.peek().map_or("the end".to_owned(), |t| t.to_string());
            self.error(format!("expected {tok}, found {found}"))
        }
    }

    fn descend(&mut self) -> Result<(), SelectorError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.error(format!("nested deeper than {MAX_DEPTH} levels"));
        }
        Ok(())
    }

    /// Counts one more node, refusing the selector past the limit.
    fn node(&mut self) -> Result<(), SelectorError> {
        self.nodes += 1;
        if self.nodes > self.max_nodes {
            return self.error(format!(
                "more than {} terms and operators (limits.max_selector_nodes)",
                self.max_nodes
            ));
        }
        Ok(())
    }

    fn expr(&mut self) -> Result<Expr, SelectorError> {
        self.descend()?;
        let mut terms = vec![self.and()?];
        while self.eat_kw(Kw::Or) {
            self.node()?;
            terms.push(self.and()?);
        }
        self.depth -= 1;
        Ok(one_or_chain(terms, Expr::Or))
    }

    fn and(&mut self) -> Result<Expr, SelectorError> {
        let mut terms = vec![self.not()?];
        while self.eat_kw(Kw::And) {
            self.node()?;
            terms.push(self.not()?);
        }
        Ok(one_or_chain(terms, Expr::And))
    }

    fn not(&mut self) -> Result<Expr, SelectorError> {
        if self.eat_kw(Kw::Not) {
            self.node()?;
            self.descend()?;
            let inner = self.not()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, SelectorError> {
        let left = self.additive()?;
        if let Some(Tok::Op(op @ ("=" | "<>" | "<" | "<=" | ">" | ">="))) = self.peek() {
            let op = *op;
            self.pos += 1;
            self.node()?;
            let right = self.additive()?;
            return Ok(Expr::Cmp(op, Box::new(left), Box::new(right)));
        }
        if self.eat_kw(Kw::Is) {
            self.node()?;
            let negated = self.eat_kw(Kw::Not);
            if !self.eat_kw(Kw::Null) {
                return self.error("expected NULL after IS");
            }
            return Ok(Expr::IsNull {
                negated,
                value: Box::new(left),
            });
        }
        let negated = self.eat_kw(Kw::Not);
        if self.eat_kw(Kw::Between) {
            self.node()?;
            let low = self.additive()?;
            if !self.eat_kw(Kw::And) {
                return self.error("expected AND in BETWEEN");
            }
            let high = self.additive()?;
            return Ok(Expr::Between {
                negated,
                value: Box::new(left),
                low: Box::new(low),
                high: Box::new(high),
            });
        }
        if self.eat_kw(Kw::In) {
            self.node()?;
            self.expect(Tok::LParen)?;
            let mut set = Vec::new();
            loop {
                // Each element costs a comparison per message: it counts as a node.
                self.node()?;
                match self.peek().cloned() {
                    Some(Tok::Str(s)) => set.push(V::Str(s)),
                    Some(Tok::Long(n)) => set.push(V::Long(n)),
                    Some(Tok::Double(n)) => set.push(V::Double(n)),
                    _ => return self.error("expected a literal in IN (...)"),
                }
                self.pos += 1;
                if !self.eat(&Tok::Comma) {
                    break;
                }
            }
            self.expect(Tok::RParen)?;
            return Ok(Expr::In {
                negated,
                value: Box::new(left),
                set,
            });
        }
        if self.eat_kw(Kw::Like) {
            self.node()?;
            let Some(Tok::Str(pattern)) = self.peek().cloned() else {
                return self.error("expected a string pattern after LIKE");
            };
            self.pos += 1;
            let escape = if self.eat_kw(Kw::Escape) {
                let Some(Tok::Str(e)) = self.peek().cloned() else {
                    return self.error("expected a string after ESCAPE");
                };
                let mut it = e.chars();
                let (Some(c), None) = (it.next(), it.next()) else {
                    return self.error("the ESCAPE string must be one character");
                };
                self.pos += 1;
                Some(c)
            } else {
                None
            };
            return Ok(Expr::Like {
                negated,
                value: Box::new(left),
                pattern: pattern.chars().collect(),
                escape,
            });
        }
        if negated {
            return self.error("expected BETWEEN, IN or LIKE after NOT");
        }
        Ok(left)
    }

    fn additive(&mut self) -> Result<Expr, SelectorError> {
        let first = self.multiplicative()?;
        let mut rest = Vec::new();
        while let Some(Tok::Op(op @ ("+" | "-"))) = self.peek() {
            let op = *op;
            self.pos += 1;
            self.node()?;
            rest.push((op, self.multiplicative()?));
        }
        Ok(arith_chain(first, rest))
    }

    fn multiplicative(&mut self) -> Result<Expr, SelectorError> {
        let first = self.unary()?;
        let mut rest = Vec::new();
        while let Some(Tok::Op(op @ ("*" | "/"))) = self.peek() {
            let op = *op;
            self.pos += 1;
            self.node()?;
            rest.push((op, self.unary()?));
        }
        Ok(arith_chain(first, rest))
    }

    fn unary(&mut self) -> Result<Expr, SelectorError> {
        if let Some(Tok::Op(op @ ("+" | "-"))) = self.peek() {
            let negate = *op == "-";
            self.pos += 1;
            if negate {
                self.node()?;
            }
            self.descend()?;
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(if negate {
                Expr::Neg(Box::new(inner))
            } else {
                inner
            });
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, SelectorError> {
        let Some(tok) = self.peek().cloned() else {
            return self.error("unexpected end of selector");
        };
        if tok != Tok::LParen {
            self.node()?;
        }
        self.pos += 1;
        Ok(match tok {
            Tok::Str(s) => Expr::Lit(V::Str(s)),
            Tok::Long(n) => Expr::Lit(V::Long(n)),
            Tok::Double(n) => Expr::Lit(V::Double(n)),
            Tok::Kw(Kw::True) => Expr::Lit(V::Bool(true)),
            Tok::Kw(Kw::False) => Expr::Lit(V::Bool(false)),
            Tok::Kw(Kw::Null) => Expr::Lit(V::Null),
            Tok::Ident(name) => Expr::Ident(name),
            Tok::LParen => {
                let inner = self.expr()?;
                self.expect(Tok::RParen)?;
                inner
            }
            other => {
                self.pos -= 1;
                return self.error(format!("unexpected {other}"));
            }
        })
    }
}

/// The only term of a chain of one, else the chain.
fn one_or_chain(mut terms: Vec<Expr>, chain: fn(Vec<Expr>) -> Expr) -> Expr {
    match terms.pop() {
        Some(only) if terms.is_empty() => only,
        Some(last) => {
            terms.push(last);
            chain(terms)
        }
        None => chain(terms),
    }
}

fn arith_chain(first: Expr, rest: Vec<(&'static str, Expr)>) -> Expr {
    if rest.is_empty() {
        first
    } else {
        Expr::Arith {
            first: Box::new(first),
            rest,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation

/// Why evaluation stopped: integer arithmetic overflowed or divided by zero. The message is
/// not selected (JMS: an error during evaluation means no match), rather than the value
/// wrapping around into something that might match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ArithmeticError;

/// A value during evaluation; `Null` doubles as SQL's *unknown*.
#[derive(Debug, Clone, PartialEq)]
enum V {
    Null,
    Bool(bool),
    Long(i64),
    Double(f64),
    Str(String),
}

impl V {
    fn number(&self) -> Option<f64> {
        match self {
            V::Long(n) => Some(*n as f64),
            V::Double(n) => Some(*n),
            _ => None,
        }
    }
}

fn field(message: &Message, name: &str) -> V {
    let opt = |s: &Option<String>| s.clone().map_or(V::Null, V::Str);
    match name {
        "JMSMessageID" => V::Str(format!("ID:{}", message.id)),
        "JMSPriority" => V::Long(i64::from(message.priority)),
        "JMSTimestamp" => V::Long(message.timestamp),
        "JMSExpiration" => V::Long(message.expiration),
        "JMSCorrelationID" => opt(&message.correlation_id),
        "JMSType" => opt(&message.message_type),
        "JMSDeliveryMode" => V::Str(
            if message.persistent {
                "PERSISTENT"
            } else {
                "NON_PERSISTENT"
            }
            .into(),
        ),
        "JMSRedelivered" => V::Bool(message.redelivery_count > 0),
        "JMSXDeliveryCount" => V::Long(i64::from(message.redelivery_count) + 1),
        "JMSXGroupID" => opt(&message.group_id),
        "JMSXGroupSeq" => V::Long(i64::from(message.group_seq)),
        _ => match message.properties.get(name) {
            None | Some(Value::Bytes(_)) => V::Null,
            Some(Value::Bool(b)) => V::Bool(*b),
            Some(Value::I8(n)) => V::Long(i64::from(*n)),
            Some(Value::I16(n)) => V::Long(i64::from(*n)),
            Some(Value::I32(n)) => V::Long(i64::from(*n)),
            Some(Value::I64(n)) => V::Long(*n),
            Some(Value::F32(n)) => V::Double(f64::from(*n)),
            Some(Value::F64(n)) => V::Double(*n),
            Some(Value::String(s)) => V::Str(s.clone()),
        },
    }
}

fn truth(v: &V) -> Option<bool> {
    match v {
        V::Bool(b) => Some(*b),
        _ => None,
    }
}

fn from_truth(t: Option<bool>) -> V {
    t.map_or(V::Null, V::Bool)
}

/// A string converted to the type of the value it is compared with, as ActiveMQ's
/// `ComparisonExpression` does under `convert_string_expressions:` (Java's `Long.valueOf`,
/// `Double.valueOf`, `Boolean.valueOf`); `None` when it does not convert.
fn convert_string(s: &str, like: &V) -> Option<V> {
    match like {
        V::Long(_) => s.parse::<i64>().ok().map(V::Long),
        V::Double(_) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|d| !d.is_nan())
            .map(V::Double),
        V::Bool(_) => Some(V::Bool(s.eq_ignore_ascii_case("true"))),
        V::Null | V::Str(_) => None,
    }
}

/// `compare`, converting a string compared with a number or boolean first when asked to.
fn compare_converting(op: &str, a: &V, b: &V, convert_strings: bool) -> Option<bool> {
    if convert_strings {
        match (a, b) {
            (V::Str(s), other @ (V::Long(_) | V::Double(_) | V::Bool(_))) => {
                return compare(op, &convert_string(s, other)?, other);
            }
            (other @ (V::Long(_) | V::Double(_) | V::Bool(_)), V::Str(s)) => {
                return compare(op, other, &convert_string(s, other)?);
            }
            _ => {}
        }
    }
    compare(op, a, b)
}

fn compare(op: &str, a: &V, b: &V) -> Option<bool> {
    use std::cmp::Ordering::*;
    let ord = match (a, b) {
        (V::Null, _) | (_, V::Null) => return None,
        (V::Long(x), V::Long(y)) => x.cmp(y),
        (V::Str(x), V::Str(y)) => {
            // JMS allows only equality on strings and booleans.
            return match op {
                "=" => Some(x == y),
                "<>" => Some(x != y),
                _ => None,
            };
        }
        (V::Bool(x), V::Bool(y)) => {
            return match op {
                "=" => Some(x == y),
                "<>" => Some(x != y),
                _ => None,
            };
        }
        _ => a.number()?.partial_cmp(&b.number()?)?,
    };
    Some(match op {
        "=" => ord == Equal,
        "<>" => ord != Equal,
        "<" => ord == Less,
        "<=" => ord != Greater,
        ">" => ord == Greater,
        _ => ord != Less,
    })
}

/// Integer operations are checked; doubles follow IEEE 754 as in Java (an overflow is an
/// infinity, which compares like one, never a wrapped value).
fn arith(op: &str, a: &V, b: &V) -> Result<V, ArithmeticError> {
    Ok(match (a, b) {
        (V::Long(x), V::Long(y)) => {
            let r = match op {
                "+" => x.checked_add(*y),
                "-" => x.checked_sub(*y),
                "*" => x.checked_mul(*y),
                _ => x.checked_div(*y),
            };
            V::Long(r.ok_or(ArithmeticError)?)
        }
        _ => match (a.number(), b.number()) {
            (Some(x), Some(y)) => V::Double(match op {
                "+" => x + y,
                "-" => x - y,
                "*" => x * y,
                _ => x / y,
            }),
            _ => V::Null,
        },
    })
}

/// SQL LIKE: `%` any run, `_` any one character, `escape` makes the next one literal. The
/// classic two-pointer wildcard walk: linear in practice, never exponential.
fn like(text: &[char], pattern: &[char], escape: Option<char>) -> bool {
    #[derive(Clone, Copy, PartialEq)]
    enum P {
        Any,
        One,
        Lit(char),
    }
    let mut pat = Vec::with_capacity(pattern.len());
    let mut i = 0;
    while i < pattern.len() {
        let c = pattern[i];
        if Some(c) == escape && i + 1 < pattern.len() {
            pat.push(P::Lit(pattern[i + 1]));
            i += 2;
            continue;
        }
        pat.push(match c {
            '%' => P::Any,
            '_' => P::One,
            c => P::Lit(c),
        });
        i += 1;
    }
    let (mut t, mut p) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pat.get(p) {
            Some(P::One) => {
                t += 1;
                p += 1;
            }
            Some(P::Lit(c)) if *c == text[t] => {
                t += 1;
                p += 1;
            }
            Some(P::Any) => {
                star = Some((p, t));
                p += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pat[p..].iter().all(|x| *x == P::Any)
}

/// Evaluates `e`. Recursion follows the tree, whose depth the parser bounds (chains are lists,
/// nesting is at most [`MAX_DEPTH`]).
/// What a selector is evaluated against.
struct Eval<'a> {
    message: &'a Message,
    convert_strings: bool,
}

impl Eval<'_> {
    fn compare(&self, op: &str, a: &V, b: &V) -> Option<bool> {
        compare_converting(op, a, b, self.convert_strings)
    }

    fn eval(&self, e: &Expr) -> Result<V, ArithmeticError> {
        let m = self.message;
        Ok(match e {
            Expr::Lit(v) => v.clone(),
            Expr::Ident(name) => field(m, name),
            Expr::Neg(inner) => match self.eval(inner)? {
                V::Long(n) => V::Long(n.checked_neg().ok_or(ArithmeticError)?),
                V::Double(n) => V::Double(-n),
                _ => V::Null,
            },
            Expr::Not(inner) => from_truth(truth(&self.eval(inner)?).map(|b| !b)),
            Expr::And(terms) => {
                // Kleene logic: false wins, then unknown; evaluation stops at the first false.
                let mut unknown = false;
                for t in terms {
                    match truth(&self.eval(t)?) {
                        Some(false) => return Ok(V::Bool(false)),
                        Some(true) => {}
                        None => unknown = true,
                    }
                }
                if unknown { V::Null } else { V::Bool(true) }
            }
            Expr::Or(terms) => {
                let mut unknown = false;
                for t in terms {
                    match truth(&self.eval(t)?) {
                        Some(true) => return Ok(V::Bool(true)),
                        Some(false) => {}
                        None => unknown = true,
                    }
                }
                if unknown { V::Null } else { V::Bool(false) }
            }
            Expr::Cmp(op, a, b) => from_truth(self.compare(op, &self.eval(a)?, &self.eval(b)?)),
            Expr::Arith { first, rest } => {
                let mut acc = self.eval(first)?;
                for (op, e) in rest {
                    acc = arith(op, &acc, &self.eval(e)?)?;
                }
                acc
            }
            Expr::Between {
                negated,
                value,
                low,
                high,
            } => {
                let v = self.eval(value)?;
                let ge = self.compare(">=", &v, &self.eval(low)?);
                let le = self.compare("<=", &v, &self.eval(high)?);
                let r = match (ge, le) {
                    (Some(false), _) | (_, Some(false)) => Some(false),
                    (Some(true), Some(true)) => Some(true),
                    _ => None,
                };
                from_truth(r.map(|b| b != *negated))
            }
            Expr::In {
                negated,
                value,
                set,
            } => {
                let v = self.eval(value)?;
                if v == V::Null {
                    return Ok(V::Null);
                }
                let found = set.iter().any(|s| self.compare("=", &v, s) == Some(true));
                V::Bool(found != *negated)
            }
            Expr::Like {
                negated,
                value,
                pattern,
                escape,
            } => match self.eval(value)? {
                V::Str(s) => {
                    let text: Vec<char> = s.chars().collect();
                    V::Bool(like(&text, pattern, *escape) != *negated)
                }
                _ => V::Null,
            },
            Expr::IsNull { negated, value } => V::Bool((self.eval(value)? == V::Null) != *negated),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use store_api::{Body, Destination, MessageId};

    fn msg() -> Message {
        let mut m = Message::new(
            MessageId::new("p", 1),
            Destination::queue("q"),
            Body::Text("x".into()),
        )
        .with_priority(7)
        .with_property("color", Value::String("red".into()))
        .with_property("size", Value::I32(12))
        .with_property("weight", Value::F64(2.5))
        .with_property("fragile", Value::Bool(true))
        .with_property("name", Value::String("100%_sure".into()));
        m.message_type = Some("order".into());
        m
    }

    fn sel(s: &str) -> bool {
        Selector::parse(s).unwrap().matches(&msg())
    }

    #[test]
    fn comparisons_and_logic() {
        assert!(sel("color = 'red'"));
        assert!(!sel("color <> 'red'"));
        assert!(sel("size > 10 AND size <= 12"));
        assert!(sel("size = 12.0"));
        assert!(sel("weight < 3"));
        assert!(sel("fragile"));
        assert!(sel("fragile = TRUE"));
        assert!(sel("NOT fragile = FALSE"));
        assert!(sel("color = 'blue' OR size = 12"));
        assert!(sel("(size + 3) * 2 = 30"));
        assert!(sel("size / 5 = 2"));
        assert!(sel("-size = -12"));
        assert!(sel("JMSPriority > 5 AND JMSType = 'order'"));
        assert!(sel("JMSDeliveryMode = 'PERSISTENT'"));
        assert!(sel("JMSXDeliveryCount = 1 AND NOT JMSRedelivered"));
        assert!(sel("size = 0x0C"));
        assert!(sel("weight = 25e-1"));
    }

    #[test]
    fn three_valued_logic_with_missing_properties() {
        assert!(!sel("missing = 1"));
        assert!(!sel("NOT (missing = 1)"));
        assert!(sel("missing IS NULL"));
        assert!(sel("color IS NOT NULL"));
        assert!(sel("missing = 1 OR size = 12"));
        assert!(!sel("missing = 1 AND size = 12"));
        assert!(!sel("missing IN ('a')"));
        assert!(!sel("missing NOT IN ('a')"));
        assert!(!sel("color > 'a'"), "strings compare only for equality");
        assert!(!sel("color = 12"), "types do not convert");
    }

    /// STOMP's string headers against numbers: converted only under ActiveMQ's prefix.
    #[test]
    fn strings_convert_in_comparisons_only_under_the_activemq_prefix() {
        let mut m = msg();
        m.properties
            .insert("price".into(), Value::String("15".into()));
        m.properties
            .insert("ratio".into(), Value::String("2.5".into()));
        m.properties
            .insert("flag".into(), Value::String("TRUE".into()));
        let conv = |s: &str| {
            Selector::parse(&format!("{CONVERT_STRING_EXPRESSIONS}{s}"))
                .unwrap()
                .matches(&m)
        };
        let plain = |s: &str| Selector::parse(s).unwrap().matches(&m);
        for s in [
            "price > 10",
            "price <= 15",
            "price = 15",
            "15 = price",
            "price <> 16",
            "price BETWEEN 10 AND 30",
            "price NOT BETWEEN 16 AND 30",
            "price = 15.0",
            "ratio > 2.0",
            "ratio < 2.6",
            "flag = TRUE",
            "price = '15'",
        ] {
            assert!(conv(s), "{s} converts");
        }
        for s in [
            "price > 15",
            "price = 14",
            "price BETWEEN 16 AND 30",
            // Arithmetic does not convert.
            "price + 1 = 16",
            "price * 1 = 15",
            // "2.5" is not an integer (Java's Long.valueOf refuses it): unknown, not false.
            "ratio > 2 OR NOT ratio > 2",
            "color = 1",
        ] {
            assert!(!conv(s), "{s} does not match");
        }
        // JMS semantics without the prefix: a string never compares with a number.
        for s in [
            "price > 10",
            "price = 15",
            "price BETWEEN 10 AND 30",
            "flag = TRUE",
        ] {
            assert!(!plain(s), "{s} without the prefix");
        }
        assert!(plain("price = '15'"));
        // The prefix alone is no selector; errors point into the text after the prefix.
        assert!(Selector::parse(CONVERT_STRING_EXPRESSIONS).is_err());
        let e = Selector::parse(&format!("{CONVERT_STRING_EXPRESSIONS}a = = 1")).unwrap_err();
        assert_eq!(e.position, 4, "{e}");
    }

    #[test]
    fn between_in_like() {
        assert!(sel("size BETWEEN 10 AND 12"));
        assert!(!sel("size NOT BETWEEN 10 AND 12"));
        assert!(sel("color IN ('green', 'red')"));
        assert!(sel("color NOT IN ('green', 'blue')"));
        assert!(sel("color LIKE 'r%'"));
        assert!(sel("color LIKE '_e_'"));
        assert!(!sel("color LIKE 'r'"));
        assert!(sel("color NOT LIKE 'b%'"));
        assert!(sel("name LIKE '100!%!_%' ESCAPE '!'"));
        assert!(!sel("name LIKE '100!%!_x%' ESCAPE '!'"));
        assert!(sel("name LIKE '%sure'"));
        assert!(sel("'it''s' = 'it''s'"));
    }

    #[test]
    fn bad_selectors_are_errors_with_a_position() {
        for (text, at) in [
            ("color = ", 8),
            ("color = 'red", 8),
            ("size BETWEEN 1 12", 15),
            ("color LIKE 5", 11),
            ("a IS 5", 5),
            ("a # b", 2),
            ("(a = 1", 6),
            ("a = 1 b", 6),
            ("a LIKE 'x' ESCAPE 'ab'", 18),
            ("99999999999999999999 = 1", 0),
        ] {
            let e = Selector::parse(text).unwrap_err();
            assert_eq!(e.position, at, "{text}: {e}");
        }
        let deep = format!("{}a = 1{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(
            Selector::parse(&deep)
                .unwrap_err()
                .reason
                .contains("nested")
        );
        let not = format!("{}a", "NOT ".repeat(10_000));
        assert!(Selector::parse(&not).is_err());
        let neg = format!("{}1 = 1", "-".repeat(10_000));
        assert!(Selector::parse(&neg).is_err());
    }

    /// Runs `f` on a thread with 2 MiB of stack, the default of Rust's spawned threads and of
    /// tokio's workers, where a selector is parsed and evaluated in the broker.
    fn on_small_stack(f: impl FnOnce() + Send + 'static) {
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn a_chain_of_100_000_terms_is_refused_by_default_and_never_recursed() {
        on_small_stack(|| {
            let ors = format!("{}size = 12", "missing = 1 OR ".repeat(99_999));
            let sums = format!("{}1 = 100000", "1 + ".repeat(99_999));
            for text in [&ors, &sums] {
                let e = parse_bounded(text, usize::MAX, DEFAULT_MAX_NODES).unwrap_err();
                assert!(e.reason.contains("limits.max_selector_nodes"), "{e}");
                // Refused at the first node past the limit, not after reading everything.
                assert!(e.position < text.len() / 5, "{e}");
                assert!(Selector::parse(text).is_err(), "longer than MAX_LEN");
                // Without any limit the chain is still parsed by a loop, evaluated without
                // recursing per term and dropped without recursing per term.
                let unlimited = parse_bounded(text, usize::MAX, usize::MAX).unwrap();
                assert!(unlimited.matches(&msg()), "{}", &text[text.len() - 20..]);
                drop(unlimited);
            }
        });
    }

    #[test]
    fn deep_nesting_is_refused_and_the_deepest_allowed_evaluates_on_a_small_stack() {
        on_small_stack(|| {
            for (open, close) in [("(", ")"), ("NOT (", ")"), ("-(", ")"), ("- ", "")] {
                let deep = format!("{}a{}", open.repeat(100_000), close.repeat(100_000));
                let e = parse_bounded(&deep, usize::MAX, usize::MAX).unwrap_err();
                assert!(e.reason.contains("nested"), "{open}: {e}");
            }
            // Each level holds an operator of every precedence level (OR, AND, =, +, *) on the
            // way down, the most tree levels one parenthesis can add; evaluation goes all the
            // way down (`1 * (boolean)` is unknown, so the whole is too).
            let level = "FALSE OR TRUE AND 1 = 0 + 1 * (";
            let depth = MAX_DEPTH - 1;
            let text = format!("{}size = 12{}", level.repeat(depth), ")".repeat(depth));
            assert!(!Selector::parse(&text).unwrap().matches(&msg()));
            let text = format!("({text}) IS NULL");
            assert!(Selector::parse(&text).is_err(), "one level too deep");
            let text = format!(
                "{}size = 12{}",
                "FALSE OR TRUE AND (".repeat(depth),
                ")".repeat(depth)
            );
            assert!(Selector::parse(&text).unwrap().matches(&msg()));
            let arith = format!(
                "{}size{} = 12",
                "0 + 1 * (".repeat(depth),
                ")".repeat(depth)
            );
            assert!(Selector::parse(&arith).unwrap().matches(&msg()));
            let too_deep = format!(
                "{}size = 12{}",
                "(".repeat(MAX_DEPTH),
                ")".repeat(MAX_DEPTH)
            );
            assert!(Selector::parse(&too_deep).is_err());
        });
    }

    #[test]
    fn nodes_are_counted_exactly() {
        for (text, nodes) in [
            ("a = 1", 3),
            ("a = 1 OR b = 2 OR c = 3", 11),
            ("1 + 2 * 3 - 4 = -x", 10),
            ("a IN ('x', 'y', 'z')", 5),
            ("NOT a IS NULL", 3),
            ("a NOT BETWEEN 1 AND 2", 4),
            ("a LIKE 'x%' ESCAPE '!'", 2),
            ("((a))", 1),
        ] {
            assert!(Selector::parse_limited(text, nodes).is_ok(), "{text}");
            let e = Selector::parse_limited(text, nodes - 1).unwrap_err();
            assert!(e.reason.contains("max_selector_nodes"), "{text}: {e}");
        }
    }

    #[test]
    fn integer_overflow_is_an_error_not_a_wrap_and_not_unknown() {
        let m = msg()
            .with_property("big", Value::I64(i64::MAX))
            .with_property("small", Value::I64(i64::MIN));
        let sel = |s: &str| Selector::parse(s).unwrap().matches(&m);
        assert!(sel("big + 0 = big"), "no overflow, no error");
        for overflow in [
            "big + 1",
            "small - 1",
            "big * 2",
            "-small",
            "small / -1",
            "size / 0",
        ] {
            // Wrapped, `big + 1` would be negative; as unknown it would be NULL.
            assert!(!sel(&format!("{overflow} < 0")), "{overflow}");
            assert!(!sel(&format!("{overflow} >= 0")), "{overflow}");
            assert!(!sel(&format!("{overflow} IS NULL")), "{overflow}");
            assert!(!sel(&format!("NOT ({overflow} = 0)")), "{overflow}");
        }
        // Evaluation stops at the first decided term, as ActiveMQ's does.
        assert!(sel("TRUE OR big + 1 > 0"));
        assert!(!sel("big + 1 > 0 OR TRUE"));
        assert!(
            sel("1.0 * big * 2 > big"),
            "doubles do not overflow into errors"
        );
    }

    proptest::proptest! {
        #[test]
        fn parsing_arbitrary_text_never_panics(s in "\\PC{0,60}") {
            if let Ok(sel) = Selector::parse(&s) {
                let _ = sel.matches(&msg());
            }
        }

        #[test]
        fn like_agrees_with_a_reference(text in "[ab%_]{0,8}", pattern in "[ab%_]{0,6}") {
            let t: Vec<char> = text.chars().collect();
            let p: Vec<char> = pattern.chars().collect();
            proptest::prop_assert_eq!(like(&t, &p, None), reference_like(&t, &p));
        }
    }

    fn reference_like(t: &[char], p: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('%', rest)) => (0..=t.len()).any(|i| reference_like(&t[i..], rest)),
            Some(('_', rest)) => !t.is_empty() && reference_like(&t[1..], rest),
            Some((c, rest)) => t.first() == Some(c) && reference_like(&t[1..], rest),
        }
    }
}
