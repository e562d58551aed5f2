//! Lexer and parser of Go's text/template language, the subset Prometheus templates use:
//! text, `{{ pipeline }}`, trim markers, comments, `if`/`else if`/`else`/`range`/`with`/`end`,
//! variables, field chains, literals and parenthesised pipelines. Errors read as Go's
//! (`template: NAME:LINE: MESSAGE`).

use super::funcs::is_func;

#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    Text(String),
    Action { line: usize, pipe: Pipe },
    If { line: usize, pipe: Pipe, then: Vec<Node>, otherwise: Vec<Node> },
    Range { line: usize, pipe: Pipe, body: Vec<Node>, otherwise: Vec<Node> },
    With { line: usize, pipe: Pipe, body: Vec<Node>, otherwise: Vec<Node> },
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Pipe {
    /// Variables declared (`$x :=`) or assigned (`$x =`).
    pub decl: Vec<String>,
    pub assign: bool,
    pub cmds: Vec<Vec<Arg>>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Arg {
    Dot,
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Var(String),
    Func(String),
    /// `.a.b` on dot.
    Field(Vec<String>),
    /// Fields of an operand: `$x.a`, `(pipeline).a`.
    Chain(Box<Arg>, Vec<String>),
    Pipe(Box<Pipe>),
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Field(String),
    Dot,
    Var(String),
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Nil,
    LParen,
    RParen,
    Pipe,
    Comma,
    Declare,
    Assign,
}

struct Item {
    tok: Tok,
    /// Whether space came before it (a field right after an operand chains onto it).
    spaced: bool,
}

/// A parsed action: its tokens and the line it starts on.
struct Action {
    line: usize,
    items: Vec<Item>,
    /// The `if …`/`with …` of an `{{else if …}}`, which ends with its parent's `{{end}}`.
    from_else: bool,
}

enum Piece {
    Text(String),
    Action(Action),
}

pub struct Parser<'a> {
    name: &'a str,
    pieces: Vec<Piece>,
    pos: usize,
    vars: Vec<String>,
}

pub fn err(name: &str, line: usize, msg: impl std::fmt::Display) -> String {
    format!("template: {name}:{line}: {msg}")
}

/// Splits the text into text and action pieces, applying trim markers and dropping comments.
fn split(name: &str, text: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut rest = text;
    let mut line = 1;
    let mut trim_next = false;
    while !rest.is_empty() {
        let Some(open) = rest.find("{{") else {
            let t = if trim_next { rest.trim_start() } else { rest };
            pieces.push(Piece::Text(t.to_owned()));
            break;
        };
        let mut before = &rest[..open];
        if trim_next {
            before = before.trim_start();
        }
        let inner_start = open + 2;
        let left_trim = rest[inner_start..].starts_with("- ")
            || rest[inner_start..].starts_with("-\t")
            || rest[inner_start..].starts_with("-\n");
        if left_trim {
            before = before.trim_end();
        }
        if !before.is_empty() {
            pieces.push(Piece::Text(before.to_owned()));
        }
        line += rest[..open].matches('\n').count();
        let body_start = if left_trim { inner_start + 1 } else { inner_start };
        let body_text = &rest[body_start..];
        // Comments end at `*/}}` and hold no actions.
        let trimmed = body_text.trim_start();
        if trimmed.starts_with("/*") {
            let Some(end) = trimmed.find("*/") else { return Err(err(name, line, "unclosed comment")) };
            let after = trimmed[end + 2..].trim_start_matches([' ', '\t', '\n']);
            let (right_trim, after) = match after.strip_prefix("-}}") {
                Some(a) => (true, a),
                None => match after.strip_prefix("}}") {
                    Some(a) => (false, a),
                    None => return Err(err(name, line, "comment ends before closing delimiter")),
                },
            };
            let consumed = body_text.len() - after.len();
            line += body_text[..consumed].matches('\n').count();
            rest = &body_text[consumed..];
            trim_next = right_trim;
            continue;
        }
        let (items, consumed, right_trim) = lex_action(name, body_text, line)?;
        pieces.push(Piece::Action(Action { line, items, from_else: false }));
        line += body_text[..consumed].matches('\n').count();
        rest = &body_text[consumed..];
        trim_next = right_trim;
    }
    Ok(pieces)
}

fn is_ident_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// Lexes one action up to and including its `}}`; gives the tokens, the bytes consumed and
/// whether it ended with a right trim marker.
fn lex_action(name: &str, s: &str, line: usize) -> Result<(Vec<Item>, usize, bool), String> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut items = Vec::new();
    let mut spaced = true;
    let mut depth = 0usize;
    loop {
        if i >= b.len() {
            return Err(err(name, line, "unclosed action"));
        }
        let c = s[i..].chars().next().unwrap_or(' ');
        if s[i..].starts_with("}}") || s[i..].starts_with("-}}") && spaced {
            if depth > 0 {
                return Err(err(name, line, "unclosed left paren"));
            }
            let right = s[i..].starts_with('-');
            return Ok((items, i + if right { 3 } else { 2 }, right));
        }
        if matches!(c, ' ' | '\t' | '\r' | '\n') {
            spaced = true;
            i += c.len_utf8();
            continue;
        }
        let mut push = |tok: Tok, spaced: &mut bool| {
            items.push(Item { tok, spaced: *spaced });
            *spaced = false;
        };
        match c {
            '(' => {
                depth += 1;
                push(Tok::LParen, &mut spaced);
                i += 1;
            }
            ')' => {
                if depth == 0 {
                    return Err(err(name, line, "unexpected right paren"));
                }
                depth -= 1;
                push(Tok::RParen, &mut spaced);
                i += 1;
            }
            '|' => {
                push(Tok::Pipe, &mut spaced);
                i += 1;
            }
            ',' => {
                push(Tok::Comma, &mut spaced);
                i += 1;
            }
            ':' => {
                if !s[i..].starts_with(":=") {
                    return Err(err(name, line, "expected :="));
                }
                push(Tok::Declare, &mut spaced);
                i += 2;
            }
            '=' => {
                push(Tok::Assign, &mut spaced);
                i += 1;
            }
            '"' => {
                let mut j = i + 1;
                let mut out = String::new();
                loop {
                    let Some(ch) = s[j..].chars().next() else {
                        return Err(err(name, line, "unterminated quoted string"));
                    };
                    j += ch.len_utf8();
                    match ch {
                        '"' => break,
                        '\n' => return Err(err(name, line, "unterminated quoted string")),
                        '\\' => {
                            let Some(e) = s[j..].chars().next() else {
                                return Err(err(name, line, "unterminated quoted string"));
                            };
                            j += e.len_utf8();
                            match e {
                                'n' => out.push('\n'),
                                't' => out.push('\t'),
                                'r' => out.push('\r'),
                                '\\' => out.push('\\'),
                                '"' => out.push('"'),
                                '\'' => out.push('\''),
                                'a' => out.push('\u{7}'),
                                'b' => out.push('\u{8}'),
                                'f' => out.push('\u{c}'),
                                'v' => out.push('\u{b}'),
                                'x' | 'u' | 'U' => {
                                    let n = match e {
                                        'x' => 2,
                                        'u' => 4,
                                        _ => 8,
                                    };
                                    let hex = s.get(j..j + n).ok_or_else(|| err(name, line, "invalid syntax"))?;
                                    let v =
                                        u32::from_str_radix(hex, 16).map_err(|_| err(name, line, "invalid syntax"))?;
                                    out.push(char::from_u32(v).ok_or_else(|| err(name, line, "invalid syntax"))?);
                                    j += n;
                                }
                                _ => return Err(err(name, line, "invalid syntax")),
                            }
                        }
                        ch => out.push(ch),
                    }
                }
                push(Tok::Str(out), &mut spaced);
                i = j;
            }
            '`' => {
                let end = s[i + 1..].find('`').ok_or_else(|| err(name, line, "unterminated raw quoted string"))?;
                push(Tok::Str(s[i + 1..i + 1 + end].to_owned()), &mut spaced);
                i += end + 2;
            }
            '\'' => {
                let mut chars = s[i + 1..].chars();
                let ch = chars.next().ok_or_else(|| err(name, line, "unterminated character constant"))?;
                if chars.next() != Some('\'') {
                    return Err(err(name, line, "unterminated character constant"));
                }
                push(Tok::Int(i64::from(u32::from(ch))), &mut spaced);
                i += 2 + ch.len_utf8();
            }
            '$' | '.' => {
                let mut j = i + 1;
                while let Some(ch) = s[j..].chars().next().filter(|&ch| is_ident_char(ch)) {
                    j += ch.len_utf8();
                }
                let word = &s[i + 1..j];
                if c == '.' && word.chars().next().is_some_and(|d| d.is_ascii_digit()) {
                    number(name, line, s, &mut i, &mut items, &mut spaced)?;
                    continue;
                }
                let tok = match (c, word.is_empty()) {
                    ('$', _) => Tok::Var(format!("${word}")),
                    (_, true) => Tok::Dot,
                    _ => Tok::Field(word.to_owned()),
                };
                push(tok, &mut spaced);
                i = j;
            }
            c if c.is_ascii_digit() || c == '-' || c == '+' => {
                number(name, line, s, &mut i, &mut items, &mut spaced)?;
            }
            c if is_ident_char(c) => {
                let mut j = i;
                while let Some(ch) = s[j..].chars().next().filter(|&ch| is_ident_char(ch)) {
                    j += ch.len_utf8();
                }
                let word = &s[i..j];
                let tok = match word {
                    "true" => Tok::Bool(true),
                    "false" => Tok::Bool(false),
                    "nil" => Tok::Nil,
                    w => Tok::Ident(w.to_owned()),
                };
                push(tok, &mut spaced);
                i = j;
            }
            c => return Err(err(name, line, format!("unrecognized character in action: U+{:04X}", u32::from(c)))),
        }
    }
}

fn number(
    name: &str,
    line: usize,
    s: &str,
    i: &mut usize,
    items: &mut Vec<Item>,
    spaced: &mut bool,
) -> Result<(), String> {
    let end = s[*i..]
        .char_indices()
        .skip(1)
        .find(|&(_, ch)| !(ch.is_ascii_alphanumeric() || ch == '.' || ch == '_' || ch == '+' || ch == '-'))
        .map_or(s.len(), |(k, _)| *i + k);
    let text = &s[*i..end];
    let tok = if let Ok(v) = strata_tsdb::gotext::parse_int(text) {
        Tok::Int(v)
    } else if let Ok(v) = strata_tsdb::gotext::parse_float(text) {
        Tok::Float(v)
    } else {
        return Err(err(name, line, format!("bad number syntax: {:?}", text)));
    };
    items.push(Item { tok, spaced: *spaced });
    *spaced = false;
    *i = end;
    Ok(())
}

/// How a list ended.
enum Closed {
    Eof,
    ByEnd,
    ByElse(usize),
}

impl<'a> Parser<'a> {
    pub fn parse(name: &'a str, text: &str) -> Result<Vec<Node>, String> {
        let pieces = split(name, text)?;
        let mut p = Parser { name, pieces, pos: 0, vars: vec!["$".to_owned()] };
        let (list, end) = p.list()?;
        match end {
            Closed::Eof => Ok(list),
            Closed::ByEnd => Err(err(name, p.last_line(), "unexpected {{end}}")),
            Closed::ByElse(line) => Err(err(name, line, "unexpected {{else}}")),
        }
    }

    fn last_line(&self) -> usize {
        match self.pieces.get(self.pos.saturating_sub(1)) {
            Some(Piece::Action(a)) => a.line,
            _ => 1,
        }
    }

    fn list(&mut self) -> Result<(Vec<Node>, Closed), String> {
        let mut out = Vec::new();
        while self.pos < self.pieces.len() {
            let i = self.pos;
            self.pos += 1;
            let (line, items) = match &mut self.pieces[i] {
                Piece::Text(t) => {
                    out.push(Node::Text(std::mem::take(t)));
                    continue;
                }
                Piece::Action(a) => (a.line, std::mem::take(&mut a.items)),
            };
            let keyword = match items.first().map(|it| &it.tok) {
                Some(Tok::Ident(w)) => w.clone(),
                _ => String::new(),
            };
            match keyword.as_str() {
                "end" => {
                    if items.len() > 1 {
                        return Err(err(self.name, line, "unexpected token in end"));
                    }
                    return Ok((out, Closed::ByEnd));
                }
                "else" => {
                    // `{{else if …}}` and `{{else with …}}` nest: put the rest back as an action.
                    if items.len() > 1 {
                        self.pos -= 1;
                        let rest: Vec<Item> = items.into_iter().skip(1).collect();
                        self.pieces[i] = Piece::Action(Action { line, items: rest, from_else: true });
                    }
                    return Ok((out, Closed::ByElse(line)));
                }
                "if" | "range" | "with" => {
                    out.push(self.control(&keyword, line, items)?);
                }
                "define" | "template" | "block" | "break" | "continue" => {
                    return Err(err(self.name, line, format!("{{{{{keyword}}}}} is not supported")));
                }
                _ => {
                    let pipe = self.pipeline(line, items, "command")?;
                    out.push(Node::Action { line, pipe });
                }
            }
        }
        Ok((out, Closed::Eof))
    }

    fn control(&mut self, keyword: &str, line: usize, items: Vec<Item>) -> Result<Node, String> {
        let scope = self.vars.len();
        let pipe = self.pipeline(line, items.into_iter().skip(1).collect(), keyword)?;
        let (body, end) = self.list()?;
        let otherwise = match end {
            Closed::Eof => return Err(err(self.name, self.last_line(), "unexpected EOF")),
            Closed::ByEnd => Vec::new(),
            Closed::ByElse(_) => {
                let nested = match self.pieces.get_mut(self.pos) {
                    Some(Piece::Action(a)) if a.from_else => Some((a.line, std::mem::take(&mut a.items))),
                    _ => None,
                };
                if let Some((l, its)) = nested {
                    // The nested if consumes the shared `{{end}}`.
                    self.pos += 1;
                    let kw = match its.first().map(|it| &it.tok) {
                        Some(Tok::Ident(w)) => w.clone(),
                        _ => String::new(),
                    };
                    if kw != "if" && kw != "with" {
                        return Err(err(self.name, l, "unexpected token in else"));
                    }
                    vec![self.control(&kw, l, its)?]
                } else {
                    let (list, end) = self.list()?;
                    match end {
                        Closed::ByEnd => list,
                        Closed::Eof => return Err(err(self.name, self.last_line(), "unexpected EOF")),
                        Closed::ByElse(l) => return Err(err(self.name, l, "expected end; found {{else}}")),
                    }
                }
            }
        };
        self.vars.truncate(scope);
        Ok(match keyword {
            "if" => Node::If { line, pipe, then: body, otherwise },
            "range" => Node::Range { line, pipe, body, otherwise },
            _ => Node::With { line, pipe, body, otherwise },
        })
    }

    fn pipeline(&mut self, line: usize, items: Vec<Item>, context: &str) -> Result<Pipe, String> {
        let mut pipe = Pipe::default();
        let mut toks: &[Item] = &items;
        // Declarations: `$x :=`, `$k, $v :=`, `$x =`.
        let decl_len = match toks {
            [Item { tok: Tok::Var(_), .. }, Item { tok: Tok::Declare | Tok::Assign, .. }, ..] => 1,
            [Item { tok: Tok::Var(_), .. }, Item { tok: Tok::Comma, .. }, Item { tok: Tok::Var(_), .. }, Item { tok: Tok::Declare | Tok::Assign, .. }, ..] => {
                3
            }
            _ => 0,
        };
        if decl_len > 0 {
            pipe.assign = matches!(toks[decl_len].tok, Tok::Assign);
            for it in toks[..decl_len].iter().step_by(2) {
                if let Tok::Var(v) = &it.tok {
                    if pipe.assign && !self.vars.contains(v) {
                        return Err(err(self.name, line, format!("undefined variable \"{v}\"")));
                    }
                    pipe.decl.push(v.clone());
                }
            }
            toks = &toks[decl_len + 1..];
        }
        let mut pos = 0;
        let parsed = self.commands(line, toks, &mut pos, context)?;
        if pos != toks.len() {
            return Err(err(self.name, line, "unexpected right paren"));
        }
        pipe.cmds = parsed;
        if !pipe.assign {
            self.vars.extend(pipe.decl.iter().cloned());
        }
        Ok(pipe)
    }

    /// Commands separated by `|` up to the end or a closing paren (not consumed).
    fn commands(&self, line: usize, toks: &[Item], pos: &mut usize, context: &str) -> Result<Vec<Vec<Arg>>, String> {
        let mut cmds = Vec::new();
        let mut cmd = Vec::new();
        while *pos < toks.len() {
            match &toks[*pos].tok {
                Tok::RParen => break,
                Tok::Pipe => {
                    if cmd.is_empty() {
                        return Err(err(self.name, line, "missing command"));
                    }
                    cmds.push(std::mem::take(&mut cmd));
                    *pos += 1;
                }
                _ => cmd.push(self.operand(line, toks, pos)?),
            }
        }
        if cmd.is_empty() {
            if cmds.is_empty() {
                return Err(err(self.name, line, format!("missing value for {context}")));
            }
            return Err(err(self.name, line, "missing command"));
        }
        cmds.push(cmd);
        for (i, c) in cmds.iter().enumerate() {
            if i > 0 && !matches!(c.first(), Some(Arg::Func(_) | Arg::Field(_) | Arg::Chain(..))) {
                return Err(err(self.name, line, "non executable command in pipeline stage 2"));
            }
        }
        Ok(cmds)
    }

    fn operand(&self, line: usize, toks: &[Item], pos: &mut usize) -> Result<Arg, String> {
        let it = &toks[*pos];
        *pos += 1;
        let base = match &it.tok {
            Tok::Dot => Arg::Dot,
            Tok::Nil => Arg::Nil,
            Tok::Bool(b) => Arg::Bool(*b),
            Tok::Int(v) => Arg::Int(*v),
            Tok::Float(v) => Arg::Float(*v),
            Tok::Str(s) => Arg::Str(s.clone()),
            Tok::Var(v) => {
                if !self.vars.contains(v) {
                    return Err(err(self.name, line, format!("undefined variable \"{v}\"")));
                }
                Arg::Var(v.clone())
            }
            Tok::Ident(f) => {
                if !is_func(f) {
                    return Err(err(self.name, line, format!("function \"{f}\" not defined")));
                }
                Arg::Func(f.clone())
            }
            Tok::Field(f) => {
                let mut chain = vec![f.clone()];
                while let Some(Item { tok: Tok::Field(f), spaced: false }) = toks.get(*pos) {
                    chain.push(f.clone());
                    *pos += 1;
                }
                return Ok(Arg::Field(chain));
            }
            Tok::LParen => {
                let cmds = self.commands(line, toks, pos, "parenthesized pipeline")?;
                if !matches!(toks.get(*pos), Some(Item { tok: Tok::RParen, .. })) {
                    return Err(err(self.name, line, "unclosed left paren"));
                }
                *pos += 1;
                Arg::Pipe(Box::new(Pipe { decl: Vec::new(), assign: false, cmds }))
            }
            other => return Err(err(self.name, line, format!("unexpected {} in operand", describe(other)))),
        };
        let mut chain = Vec::new();
        while let Some(Item { tok: Tok::Field(f), spaced: false }) = toks.get(*pos) {
            chain.push(f.clone());
            *pos += 1;
        }
        if chain.is_empty() {
            Ok(base)
        } else {
            Ok(Arg::Chain(Box::new(base), chain))
        }
    }
}

fn describe(t: &Tok) -> &'static str {
    match t {
        Tok::RParen => "\")\"",
        Tok::Pipe => "\"|\"",
        Tok::Comma => "\",\"",
        Tok::Declare => "\":=\"",
        Tok::Assign => "\"=\"",
        _ => "token",
    }
}
