//! The PromQL lexer, token for token as Prometheus 3.x lexes (`promql/parser/lex.go`): the same
//! tokens at the same byte offsets, and the same errors where its lexer gives up.
//!
//! It is also the one PromQL scanner of this crate: the engine finds call and aggregation
//! positions with it.

use super::golang::{quote_rune, unicode_name};

/// An aggregation operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Aggregator {
    Avg,
    Bottomk,
    Count,
    CountValues,
    Group,
    Limitk,
    LimitRatio,
    Max,
    Min,
    Quantile,
    Stddev,
    Stdvar,
    Sum,
    Topk,
}

impl Aggregator {
    /// Whether the operator takes a parameter before the aggregated expression.
    pub fn has_param(self) -> bool {
        matches!(
            self,
            Aggregator::Topk
                | Aggregator::Bottomk
                | Aggregator::CountValues
                | Aggregator::Quantile
                | Aggregator::Limitk
                | Aggregator::LimitRatio
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    LeftParen,
    RightParen,
    LeftBrace,
    RightBrace,
    LeftBracket,
    RightBracket,
    Comma,
    Colon,
    DoubleColon,
    /// `=`, the equality matcher.
    Eql,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    /// `==`
    Eqlc,
    Neq,
    Lss,
    Lte,
    Gtr,
    Gte,
    EqlRegex,
    NeqRegex,
    At,
    Land,
    Lor,
    Lunless,
    Atan2,
    Aggregator(Aggregator),
    Bool,
    By,
    GroupLeft,
    GroupRight,
    Ignoring,
    Offset,
    Smoothed,
    Anchored,
    /// `fill`, `fill_left` and `fill_right` are keywords only before `(`.
    Fill,
    FillLeft,
    FillRight,
    On,
    Without,
    Start,
    End,
    Step,
    Range,
    Identifier,
    /// An identifier with a colon, which only metric names may have.
    MetricIdentifier,
    Number,
    Duration,
    String,
    Eof,
}

impl Kind {
    /// Prometheus's item classes, which decide how an unexpected token is described.
    fn class(self) -> Class {
        use Kind::*;
        match self {
            Add | Sub | Mul | Div | Mod | Pow | Eqlc | Neq | Lss | Lte | Gtr | Gte | EqlRegex | NeqRegex | At
            | Land | Lor | Lunless | Atan2 => Class::Operator,
            Aggregator(_) => Class::Aggregator,
            Bool | By | GroupLeft | GroupRight | Ignoring | Offset | Smoothed | Anchored | Fill | FillLeft
            | FillRight | On | Without => Class::Keyword,
            Identifier => Class::Named("identifier"),
            MetricIdentifier => Class::Named("metric identifier"),
            Number => Class::Named("number"),
            Duration => Class::Named("duration"),
            String => Class::Named("string"),
            Eof => Class::Eof,
            _ => Class::Plain,
        }
    }
}

enum Class {
    Operator,
    Aggregator,
    Keyword,
    /// Tokens Prometheus names by kind: `identifier "foo"`.
    Named(&'static str),
    Eof,
    /// Punctuation and preprocessors: just the quoted text.
    Plain,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Token<'a> {
    pub kind: Kind,
    /// Byte offset of the token in the query.
    pub pos: usize,
    pub text: &'a str,
}

impl Token<'_> {
    pub fn end(&self) -> usize {
        self.pos + self.text.len()
    }

    /// How Prometheus names the token in "unexpected …" messages.
    pub fn describe(&self) -> String {
        let text = self.text;
        match self.kind.class() {
            Class::Operator => format!("<op:{text}>"),
            Class::Aggregator => format!("<aggr:{text}>"),
            Class::Keyword => format!("<{text}>"),
            Class::Eof => "end of input".to_string(),
            // Identifiers are quoted whole; other values are cut to ten characters.
            Class::Named(name) if matches!(self.kind, Kind::Identifier | Kind::MetricIdentifier) => {
                format!("{name} {}", super::golang::quote(text))
            }
            Class::Named(name) => format!("{name} {}", short_quote(text)),
            Class::Plain => short_quote(text),
        }
    }
}

/// Go's `%.10q…`: values over ten bytes are shown by their first ten characters.
fn short_quote(text: &str) -> String {
    if text.len() > 10 {
        let cut: String = text.chars().take(10).collect();
        format!("{}...", super::golang::quote(&cut))
    } else {
        super::golang::quote(text)
    }
}

/// Where and why lexing stopped.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct LexError {
    pub pos: usize,
    pub message: String,
}

#[derive(Clone, Copy, PartialEq)]
enum State {
    Statements,
    /// Right after `[`: the start of a range or subquery duration.
    Duration,
    Done,
}

pub(crate) struct Lexer<'a> {
    input: &'a str,
    pos: usize,
    start: usize,
    state: State,
    paren_depth: i64,
    brace_open: bool,
    bracket_open: bool,
    got_colon: bool,
    got_duration: bool,
}

type Lexed<'a> = Result<Option<Token<'a>>, LexError>;

impl<'a> Lexer<'a> {
    pub fn new(input: &'a str) -> Self {
        Lexer {
            input,
            pos: 0,
            start: 0,
            state: State::Statements,
            paren_depth: 0,
            brace_open: false,
            bracket_open: false,
            got_colon: false,
            got_duration: false,
        }
    }

    /// The next token; comments are skipped. After the end of input or an error, every call
    /// returns the end of input.
    pub fn next_token(&mut self) -> Result<Token<'a>, LexError> {
        loop {
            let lexed = match self.state {
                State::Done => Ok(Some(self.emit(Kind::Eof))),
                State::Statements if self.brace_open => self.inside_braces(),
                State::Statements => self.statements(),
                State::Duration => self.duration_expr(),
            };
            match lexed {
                Ok(Some(tok)) => {
                    if tok.kind == Kind::Eof {
                        self.state = State::Done;
                    }
                    return Ok(tok);
                }
                Ok(None) => {}
                Err(e) => {
                    self.state = State::Done;
                    return Err(e);
                }
            }
        }
    }

    fn peek(&self) -> Option<char> {
        self.input[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn backup(&mut self, c: char) {
        self.pos -= c.len_utf8();
    }

    fn accept(&mut self, valid: impl Fn(char) -> bool) -> bool {
        match self.peek() {
            Some(c) if valid(c) => {
                self.pos += c.len_utf8();
                true
            }
            _ => false,
        }
    }

    fn emit(&mut self, kind: Kind) -> Token<'a> {
        let tok = Token { kind, pos: self.start, text: &self.input[self.start..self.pos] };
        self.start = self.pos;
        tok
    }

    /// `)`, which closes a parenthesis in expressions and in brackets alike.
    fn right_paren(&mut self) -> Result<Token<'a>, LexError> {
        let tok = self.emit(Kind::RightParen);
        self.paren_depth -= 1;
        if self.paren_depth < 0 {
            return Err(self.error(format!("unexpected right parenthesis {}", quote_rune(')'))));
        }
        Ok(tok)
    }

    fn error(&self, message: String) -> LexError {
        LexError { pos: self.start, message }
    }

    fn skip_spaces(&mut self) {
        while self.accept(is_space) {}
        self.start = self.pos;
    }

    fn comment(&mut self) {
        while self.accept(|c| c != '\n' && c != '\r') {}
        self.start = self.pos;
    }

    fn statements(&mut self) -> Lexed<'a> {
        if self.input[self.pos..].starts_with('#') {
            self.comment();
            return Ok(None);
        }
        let Some(c) = self.bump() else {
            if self.paren_depth != 0 {
                return Err(self.error("unclosed left parenthesis".into()));
            }
            if self.bracket_open {
                return Err(self.error("unclosed left bracket".into()));
            }
            return Ok(Some(self.emit(Kind::Eof)));
        };
        let kind = match c {
            ',' => Kind::Comma,
            c if is_space(c) => {
                self.skip_spaces();
                return Ok(None);
            }
            '*' => Kind::Mul,
            '/' => Kind::Div,
            '%' => Kind::Mod,
            '+' => Kind::Add,
            '-' => Kind::Sub,
            '^' => Kind::Pow,
            '=' => match self.peek() {
                Some('=') => {
                    self.bump();
                    Kind::Eqlc
                }
                Some('~') => return Err(self.error(format!("unexpected character after '=': {}", quote_rune('~')))),
                _ => Kind::Eql,
            },
            '!' => match self.bump() {
                Some('=') => Kind::Neq,
                other => {
                    let shown = quote_rune(other.unwrap_or(char::REPLACEMENT_CHARACTER));
                    return Err(self.error(format!("unexpected character after '!': {shown}")));
                }
            },
            '<' | '>' => {
                let eq = self.accept(|c| c == '=');
                match (c, eq) {
                    ('<', true) => Kind::Lte,
                    ('<', false) => Kind::Lss,
                    (_, true) => Kind::Gte,
                    (_, false) => Kind::Gtr,
                }
            }
            c if is_digit(c) || (c == '.' && self.peek().is_some_and(is_digit)) => {
                self.backup(c);
                return self.number_or_duration().map(Some);
            }
            '"' | '\'' => return self.string(c).map(Some),
            '`' => return self.raw_string().map(Some),
            c if (is_alpha(c) || c == ':') && !self.bracket_open => {
                self.backup(c);
                return Ok(Some(self.keyword_or_identifier()));
            }
            ':' => {
                if self.got_colon {
                    return Err(self.error(format!("unexpected colon {}", quote_rune(':'))));
                }
                self.got_colon = true;
                if self.accept(|c| c == ':') {
                    Kind::DoubleColon
                } else {
                    Kind::Colon
                }
            }
            c if is_alpha(c) => {
                // Inside brackets only the duration keywords may follow a duration.
                if matches!(c, 's' | 'S' | 'm' | 'M') {
                    if let Some(kind) = self.duration_keyword() {
                        return Ok(Some(self.emit(kind)));
                    }
                }
                return Err(self.error(format!(
                    "unexpected character: {}, expected {}",
                    quote_rune(c),
                    quote_rune(':')
                )));
            }
            '(' => {
                self.paren_depth += 1;
                Kind::LeftParen
            }
            ')' => return self.right_paren().map(Some),
            '{' => {
                self.brace_open = true;
                Kind::LeftBrace
            }
            '[' => {
                if self.bracket_open {
                    return Err(self.error(format!("unexpected left bracket {}", quote_rune('['))));
                }
                self.got_colon = false;
                let tok = self.emit(Kind::LeftBracket);
                self.skip_spaces();
                self.bracket_open = true;
                self.state = State::Duration;
                return Ok(Some(tok));
            }
            ']' => {
                if !self.bracket_open {
                    return Err(self.error(format!("unexpected right bracket {}", quote_rune(']'))));
                }
                self.bracket_open = false;
                Kind::RightBracket
            }
            '@' => Kind::At,
            c => return Err(self.error(format!("unexpected character: {}", quote_rune(c)))),
        };
        Ok(Some(self.emit(kind)))
    }

    /// Inside `{…}`: keywords are plain label names there.
    fn inside_braces(&mut self) -> Lexed<'a> {
        if self.input[self.pos..].starts_with('#') {
            self.comment();
            return Ok(None);
        }
        let Some(c) = self.bump() else {
            return Err(self.error("unexpected end of input inside braces".into()));
        };
        let kind = match c {
            c if is_space(c) => {
                self.skip_spaces();
                return Ok(None);
            }
            c if is_alpha(c) => {
                while self.accept(is_alphanumeric) {}
                Kind::Identifier
            }
            ',' => Kind::Comma,
            '"' | '\'' => return self.string(c).map(Some),
            '`' => return self.raw_string().map(Some),
            '=' => {
                if self.accept(|c| c == '~') {
                    Kind::EqlRegex
                } else {
                    Kind::Eql
                }
            }
            '!' => match self.bump() {
                Some('~') => Kind::NeqRegex,
                Some('=') => Kind::Neq,
                other => {
                    let shown = quote_rune(other.unwrap_or(char::REPLACEMENT_CHARACTER));
                    return Err(self.error(format!("unexpected character after '!' inside braces: {shown}")));
                }
            },
            '{' => return Err(self.error(format!("unexpected left brace {}", quote_rune('{')))),
            '}' => {
                self.brace_open = false;
                Kind::RightBrace
            }
            c => return Err(self.error(format!("unexpected character inside braces: {}", quote_rune(c)))),
        };
        Ok(Some(self.emit(kind)))
    }

    /// After `[`, until the first number or duration: duration arithmetic and its keywords.
    fn duration_expr(&mut self) -> Lexed<'a> {
        let unexpected =
            |l: &Self, c: char| l.error(format!("unexpected character in duration expression: {}", quote_rune(c)));
        let Some(c) = self.bump() else {
            return Err(self.error("unexpected end of input in duration expression".into()));
        };
        let kind = match c {
            ']' => {
                self.bracket_open = false;
                self.got_colon = false;
                self.state = State::Statements;
                Kind::RightBracket
            }
            ':' => {
                let tok = self.emit(Kind::Colon);
                if !self.got_duration {
                    return Err(self.error("unexpected colon before duration in duration expression".into()));
                }
                if self.got_colon {
                    return Err(self.error("unexpected repeated colon in duration expression".into()));
                }
                self.got_colon = true;
                return Ok(Some(tok));
            }
            '(' => {
                self.paren_depth += 1;
                Kind::LeftParen
            }
            ')' => return self.right_paren().map(Some),
            c if is_space(c) => {
                self.skip_spaces();
                return Ok(None);
            }
            '+' => Kind::Add,
            '-' => Kind::Sub,
            '*' => Kind::Mul,
            '/' => Kind::Div,
            '%' => Kind::Mod,
            '^' => Kind::Pow,
            ',' => Kind::Comma,
            's' | 'S' | 'm' | 'M' | 'r' | 'R' => match self.duration_keyword() {
                Some(kind) => kind,
                None => return Err(unexpected(self, c)),
            },
            c if is_digit(c) || (c == '.' && self.peek().is_some_and(is_digit)) => {
                self.backup(c);
                self.got_duration = true;
                self.state = State::Statements;
                return self.number_or_duration().map(Some);
            }
            c => return Err(unexpected(self, c)),
        };
        Ok(Some(self.emit(kind)))
    }

    /// `step`, `range`, `min_of` or `max_of` (`min`, `max` before Prometheus 3.9) after its
    /// first letter, inside brackets.
    fn duration_keyword(&mut self) -> Option<Kind> {
        while self.accept(is_alpha) {}
        match self.input[self.start..self.pos].to_ascii_lowercase().as_str() {
            "step" => Some(Kind::Step),
            "range" => Some(Kind::Range),
            "min" | "min_of" => Some(Kind::Aggregator(Aggregator::Min)),
            "max" | "max_of" => Some(Kind::Aggregator(Aggregator::Max)),
            _ => None,
        }
    }

    fn string(&mut self, quote: char) -> Result<Token<'a>, LexError> {
        loop {
            match self.bump() {
                Some('\\') => self.escape(quote)?,
                // Go decodes invalid UTF-8 to U+FFFD, and refuses that code point in strings.
                Some(char::REPLACEMENT_CHARACTER) => return Err(self.error("invalid UTF-8 rune".into())),
                None | Some('\n') => return Err(self.error("unterminated quoted string".into())),
                Some(c) if c == quote => return Ok(self.emit(Kind::String)),
                Some(_) => {}
            }
        }
    }

    fn raw_string(&mut self) -> Result<Token<'a>, LexError> {
        loop {
            match self.bump() {
                Some(char::REPLACEMENT_CHARACTER) => return Err(self.error("invalid UTF-8 rune".into())),
                None => return Err(self.error("unterminated raw string".into())),
                Some('`') => return Ok(self.emit(Kind::String)),
                Some(_) => {}
            }
        }
    }

    /// An escape sequence in a quoted string, after the backslash.
    fn escape(&mut self, quote: char) -> Result<(), LexError> {
        let (mut digits, base, max, mut c) = match self.bump() {
            Some('a' | 'b' | 'f' | 'n' | 'r' | 't' | 'v' | '\\') => return Ok(()),
            Some(c) if c == quote => return Ok(()),
            Some(c @ '0'..='7') => (3, 8, 255, Some(c)),
            Some('x') => (2, 16, 255, self.bump()),
            Some('u') => (4, 16, 0x10FFFF, self.bump()),
            Some('U') => (8, 16, 0x10FFFF, self.bump()),
            None => return Err(self.error("escape sequence not terminated".into())),
            Some(c) => return Err(self.error(format!("unknown escape sequence {}", unicode_name(c)))),
        };
        let mut value: u32 = 0;
        while digits > 0 {
            let digit = c.and_then(|c| c.to_digit(16)).filter(|d| *d < base);
            let Some(d) = digit else {
                return Err(match c {
                    None => self.error("escape sequence not terminated".into()),
                    Some(c) => self.error(format!("illegal character {} in escape sequence", unicode_name(c))),
                });
            };
            value = value * base + d;
            digits -= 1;
            if digits > 0 {
                c = self.bump();
            }
        }
        if value > max || (0xD800..0xE000).contains(&value) {
            return Err(self.error("escape sequence is an invalid Unicode code point".into()));
        }
        Ok(())
    }

    fn number_or_duration(&mut self) -> Result<Token<'a>, LexError> {
        if self.scan_number() {
            return Ok(self.emit(Kind::Number));
        }
        if self.remaining_duration() {
            return Ok(self.emit(Kind::Duration));
        }
        Err(self.error(format!(
            "bad number or duration syntax: {}",
            super::golang::quote(&self.input[self.start..self.pos])
        )))
    }

    /// Units after a number that did not end where a number must: `5m`, `1h30m`, `500ms`. Bad
    /// unit combinations (`5hs`) are refused later, when the duration is read. On failure the
    /// position is after the offending character.
    fn remaining_duration(&mut self) -> bool {
        let unit = |c: char| "smhdwy".contains(c);
        if !self.accept(unit) {
            return false;
        }
        self.accept(|c| c == 's');
        while self.accept(is_digit) {
            while self.accept(is_digit) {}
            // Years come first, so a later term cannot be one.
            if !self.accept(|c| "smhdw".contains(c)) {
                return false;
            }
            self.accept(|c| c == 's');
        }
        match self.peek() {
            Some(c) if is_alphanumeric(c) => {
                self.pos += c.len_utf8();
                false
            }
            _ => true,
        }
    }

    /// Decimal, hexadecimal or floating-point numbers with `_` separators. Whether the text is
    /// a valid number is decided when it is read; this only finds where it ends.
    fn scan_number(&mut self) -> bool {
        let initial = self.pos;
        let mut hex = false;
        if self.accept(|c| c == '0') && self.accept(|c| c == 'x' || c == 'X') {
            self.accept(|c| c == '_');
            hex = true;
        }
        let digit = move |c: char| if hex { c.is_ascii_hexdigit() } else { is_digit(c) };
        self.accept(|c| c == '.');
        self.accept(digit);
        let mut dot = false;
        let mut exponent = false;
        while self.peek().is_some_and(|c| digit(c) || matches!(c, '.' | '_' | 'e' | 'E')) {
            let c = self.peek().unwrap_or_default();
            if c == '.' && dot {
                self.bump();
                return false;
            }
            if (c == 'e' || c == 'E') && exponent {
                self.bump();
                return false;
            }
            if self.accept(|c| c == '.') {
                dot = true;
                // A dot may not be followed by `_` or another dot, and hex numbers have no fraction.
                if self.accept(|c| c == '_' || c == '.') || hex {
                    return false;
                }
                continue;
            }
            if self.accept(|c| c == 'e' || c == 'E') {
                exponent = true;
                self.accept(|c| c == '+' || c == '-');
                if self.accept(|c| matches!(c, '.' | '_' | 'e' | 'E')) || self.peek().is_none() {
                    return false;
                }
                continue;
            }
            if self.accept(|c| c == '_') {
                if self.accept(|c| matches!(c, '.' | '_' | 'e' | 'E')) || self.peek().is_none() {
                    return false;
                }
                continue;
            }
            while self.accept(digit) {}
        }
        if self.pos == initial {
            return false;
        }
        !self.peek().is_some_and(is_alphanumeric)
    }

    fn keyword_or_identifier(&mut self) -> Token<'a> {
        while self.accept(|c| is_alphanumeric(c) || c == ':') {}
        let word = &self.input[self.start..self.pos];
        let kind = match keyword(&word.to_ascii_lowercase()) {
            Some(Kind::Fill | Kind::FillLeft | Kind::FillRight)
                if !self.input[self.pos..].trim_start_matches(is_space).starts_with('(') =>
            {
                Kind::Identifier
            }
            Some(kind) => kind,
            None if word.contains(':') => Kind::MetricIdentifier,
            None => Kind::Identifier,
        };
        self.emit(kind)
    }
}

/// Keywords, operators and aggregators by lower-case name; `inf` and `nan` are numbers.
fn keyword(word: &str) -> Option<Kind> {
    use Aggregator::*;
    Some(match word {
        "and" => Kind::Land,
        "or" => Kind::Lor,
        "unless" => Kind::Lunless,
        "atan2" => Kind::Atan2,
        "sum" => Kind::Aggregator(Sum),
        "avg" => Kind::Aggregator(Avg),
        "count" => Kind::Aggregator(Count),
        "min" => Kind::Aggregator(Min),
        "max" => Kind::Aggregator(Max),
        "group" => Kind::Aggregator(Group),
        "stddev" => Kind::Aggregator(Stddev),
        "stdvar" => Kind::Aggregator(Stdvar),
        "topk" => Kind::Aggregator(Topk),
        "bottomk" => Kind::Aggregator(Bottomk),
        "count_values" => Kind::Aggregator(CountValues),
        "quantile" => Kind::Aggregator(Quantile),
        "limitk" => Kind::Aggregator(Limitk),
        "limit_ratio" => Kind::Aggregator(LimitRatio),
        "offset" => Kind::Offset,
        "smoothed" => Kind::Smoothed,
        "anchored" => Kind::Anchored,
        "fill" => Kind::Fill,
        "fill_left" => Kind::FillLeft,
        "fill_right" => Kind::FillRight,
        "by" => Kind::By,
        "without" => Kind::Without,
        "on" => Kind::On,
        "ignoring" => Kind::Ignoring,
        "group_left" => Kind::GroupLeft,
        "group_right" => Kind::GroupRight,
        "bool" => Kind::Bool,
        "start" => Kind::Start,
        "end" => Kind::End,
        "step" => Kind::Step,
        "range" => Kind::Range,
        "inf" | "nan" => Kind::Number,
        _ => return None,
    })
}

pub(crate) fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

fn is_digit(c: char) -> bool {
    c.is_ascii_digit()
}

fn is_alpha(c: char) -> bool {
    c == '_' || c.is_ascii_alphabetic()
}

fn is_alphanumeric(c: char) -> bool {
    is_alpha(c) || is_digit(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(q: &str) -> Result<Vec<(Kind, usize, &str)>, LexError> {
        let mut l = Lexer::new(q);
        let mut out = Vec::new();
        loop {
            let t = l.next_token()?;
            if t.kind == Kind::Eof {
                return Ok(out);
            }
            out.push((t.kind, t.pos, t.text));
        }
    }

    #[test]
    fn tokens_and_offsets() {
        use Kind::*;
        assert_eq!(
            kinds(r#"test:name{on!~"b:ar"}[4m:4s] offset 10m"#).unwrap(),
            [
                (MetricIdentifier, 0, "test:name"),
                (LeftBrace, 9, "{"),
                (Identifier, 10, "on"),
                (NeqRegex, 12, "!~"),
                (String, 14, r#""b:ar""#),
                (RightBrace, 20, "}"),
                (LeftBracket, 21, "["),
                (Duration, 22, "4m"),
                (Colon, 24, ":"),
                (Duration, 25, "4s"),
                (RightBracket, 27, "]"),
                (Offset, 29, "offset"),
                (Duration, 36, "10m"),
            ]
        );
        assert_eq!(kinds("[  5m ]").unwrap(), [(LeftBracket, 0, "["), (Duration, 3, "5m"), (RightBracket, 6, "]")]);
        assert_eq!(kinds("5 # 1+1\n5").unwrap(), [(Number, 0, "5"), (Number, 8, "5")]);
        assert_eq!(
            kinds("NaN123 -Inf 0x_1F").unwrap(),
            [(Identifier, 0, "NaN123"), (Sub, 7, "-"), (Number, 8, "Inf"), (Number, 12, "0x_1F")]
        );
        assert_eq!(kinds("{NaN\t!= \"bar\" }").unwrap()[1], (Identifier, 1, "NaN"));
    }

    #[test]
    fn errors() {
        for (q, pos, msg) in [
            (".٩", 0, "unexpected character: '.'"),
            ("0a:bc", 0, "bad number or duration syntax: \"0\""),
            ("{0a='a'}", 1, "unexpected character inside braces: '0'"),
            ("{foo:a=\"bar\"}", 4, "unexpected character inside braces: ':'"),
            ("!(", 0, "unexpected character after '!': '('"),
            ("{alert!#\"bar\"}", 6, "unexpected character after '!' inside braces: '#'"),
            ("())", 3, "unexpected right parenthesis ')'"),
            ("{{", 1, "unexpected left brace '{'"),
            ("[[", 1, "unexpected character in duration expression: '['"),
            ("x[5m[", 4, "unexpected left bracket '['"),
            ("[]]", 2, "unexpected right bracket ']'"),
            ("\"\\400\"", 0, "escape sequence is an invalid Unicode code point"),
            ("\"\\uD800\"", 0, "escape sequence is an invalid Unicode code point"),
            ("\"\n\"", 0, "unterminated quoted string"),
            ("'\u{fffd}'", 0, "invalid UTF-8 rune"),
            ("x !", 2, "unexpected character after '!': '\u{fffd}'"),
            ("[5m:1m:2m]", 6, "unexpected colon ':'"),
            ("[:5m]", 2, "unexpected colon before duration in duration expression"),
        ] {
            assert_eq!(kinds(q), Err(LexError { pos, message: msg.into() }), "{q:?}");
        }
    }
}
