//! Executing a parsed template: Go's values reduced to what Prometheus templates see, its
//! truth, field and variable rules.

use std::collections::BTreeMap;
use std::rc::Rc;

use super::funcs;
use super::parse::{err, Arg, Node, Pipe};
use super::Data;

#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// A `map[string]string` (label sets): a missing key reads as "".
    Map(Rc<BTreeMap<String, String>>),
    /// A `map[string]interface{}` (`args`): a missing key reads as nil.
    Dict(Rc<BTreeMap<String, Val>>),
    List(Rc<Vec<Val>>),
    /// A struct with its Go type name and fields (the template data, a query sample).
    Struct(&'static str, Rc<BTreeMap<&'static str, Val>>),
}

impl Val {
    pub fn type_name(&self) -> &'static str {
        match self {
            Val::Nil => "<nil>",
            Val::Bool(_) => "bool",
            Val::Int(_) => "int",
            Val::Float(_) => "float64",
            Val::Str(_) => "string",
            Val::Map(_) => "map[string]string",
            Val::Dict(_) => "map[string]interface {}",
            Val::List(_) => "template.queryResult",
            Val::Struct(t, _) => t,
        }
    }

    /// Go's truth of a value in `if`, `and`, `or`, `not`.
    pub fn truth(&self) -> bool {
        match self {
            Val::Nil => false,
            Val::Bool(b) => *b,
            Val::Int(i) => *i != 0,
            Val::Float(f) => *f != 0.0,
            Val::Str(s) => !s.is_empty(),
            Val::Map(m) => !m.is_empty(),
            Val::Dict(m) => !m.is_empty(),
            Val::List(l) => !l.is_empty(),
            Val::Struct(..) => true,
        }
    }

    /// The value as `fmt.Sprint` prints it.
    pub fn print(&self, out: &mut String) {
        match self {
            Val::Nil => out.push_str("<nil>"),
            Val::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Val::Int(i) => out.push_str(&i.to_string()),
            Val::Float(f) => strata_tsdb::gotext::write_g(out, *f),
            Val::Str(s) => out.push_str(s),
            Val::Map(m) => {
                out.push_str("map[");
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    out.push_str(k);
                    out.push(':');
                    out.push_str(v);
                }
                out.push(']');
            }
            Val::Dict(m) => {
                out.push_str("map[");
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    out.push_str(k);
                    out.push(':');
                    v.print(out);
                }
                out.push(']');
            }
            Val::List(l) => {
                out.push('[');
                for (i, v) in l.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    v.print(out);
                }
                out.push(']');
            }
            Val::Struct(_, fields) => {
                out.push_str("&{");
                for (i, v) in fields.values().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    v.print(out);
                }
                out.push('}');
            }
        }
    }

    pub fn to_text(&self) -> String {
        let mut s = String::new();
        self.print(&mut s);
        s
    }

    pub fn labels(m: &BTreeMap<String, String>) -> Val {
        Val::Map(Rc::new(m.clone()))
    }
}

pub(super) struct Exec<'a, 'd> {
    pub name: &'a str,
    pub data: &'a Data<'d>,
    vars: Vec<(String, Val)>,
    line: usize,
}

/// Most loop iterations and output bytes of one expansion: a template is config, but a
/// `range` over a large query result must not hold the ruler.
const MAX_OUTPUT: usize = 1 << 20;

pub fn execute(name: &str, nodes: &[Node], data: &Data<'_>) -> Result<String, String> {
    let mut fields = BTreeMap::new();
    fields.insert("Labels", Val::labels(data.labels));
    fields.insert("ExternalLabels", Val::labels(data.external_labels));
    fields.insert("ExternalURL", Val::Str(data.external_url.to_owned()));
    fields.insert("Value", Val::Float(data.value));
    execute_with_dot(name, nodes, data, Val::Struct("struct", Rc::new(fields)))
}

/// Executes with `dot` as the data (Prometheus passes the alert's; tests pass others).
pub fn execute_with_dot(name: &str, nodes: &[Node], data: &Data<'_>, dot: Val) -> Result<String, String> {
    let mut ex = Exec { name, data, vars: vec![("$".to_owned(), dot.clone())], line: 1 };
    let mut out = String::new();
    ex.list(nodes, &dot, &mut out)?;
    Ok(out)
}

impl Exec<'_, '_> {
    pub fn fail(&self, msg: impl std::fmt::Display) -> String {
        err(self.name, self.line, format!("executing \"{}\": {msg}", self.name))
    }

    fn list(&mut self, nodes: &[Node], dot: &Val, out: &mut String) -> Result<(), String> {
        for n in nodes {
            if out.len() > MAX_OUTPUT {
                return Err(self.fail("output larger than 1 MiB"));
            }
            match n {
                Node::Text(t) => out.push_str(t),
                Node::Action { line, pipe } => {
                    self.line = *line;
                    let v = self.pipe(pipe, dot)?;
                    if pipe.decl.is_empty() {
                        // text/template prints a missing value as "<no value>".
                        if v == Val::Nil {
                            out.push_str("<no value>");
                        } else {
                            v.print(out);
                        }
                    }
                }
                Node::If { line, pipe, then, otherwise } => {
                    self.line = *line;
                    let scope = self.vars.len();
                    let v = self.pipe(pipe, dot)?;
                    let r = if v.truth() { self.list(then, dot, out) } else { self.list(otherwise, dot, out) };
                    self.vars.truncate(scope);
                    r?;
                }
                Node::With { line, pipe, body, otherwise } => {
                    self.line = *line;
                    let scope = self.vars.len();
                    let v = self.pipe(pipe, dot)?;
                    let r = if v.truth() { self.list(body, &v, out) } else { self.list(otherwise, dot, out) };
                    self.vars.truncate(scope);
                    r?;
                }
                Node::Range { line, pipe, body, otherwise } => {
                    self.line = *line;
                    let scope = self.vars.len();
                    let decl = Pipe { decl: Vec::new(), ..pipe.clone() };
                    let v = self.pipe(&decl, dot)?;
                    let items: Vec<(Val, Val)> = match &v {
                        Val::Map(m) => m.iter().map(|(k, v)| (Val::Str(k.clone()), Val::Str(v.clone()))).collect(),
                        Val::Dict(m) => m.iter().map(|(k, v)| (Val::Str(k.clone()), v.clone())).collect(),
                        Val::List(l) => l.iter().enumerate().map(|(i, v)| (Val::Int(i as i64), v.clone())).collect(),
                        Val::Int(n) => (0..*n).map(|i| (Val::Int(i), Val::Int(i))).collect(),
                        Val::Nil => Vec::new(),
                        other => return Err(self.fail(format!("range can't iterate over {}", other.to_text()))),
                    };
                    if items.is_empty() {
                        self.list(otherwise, dot, out)?;
                    }
                    for (k, item) in items {
                        let inner = self.vars.len();
                        match pipe.decl.as_slice() {
                            [v] => self.vars.push((v.clone(), item.clone())),
                            [kv, vv] => {
                                self.vars.push((kv.clone(), k));
                                self.vars.push((vv.clone(), item.clone()));
                            }
                            _ => {}
                        }
                        self.list(body, &item, out)?;
                        self.vars.truncate(inner);
                        if out.len() > MAX_OUTPUT {
                            return Err(self.fail("output larger than 1 MiB"));
                        }
                    }
                    self.vars.truncate(scope);
                }
            }
        }
        Ok(())
    }

    fn var(&self, name: &str) -> Result<Val, String> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| self.fail(format!("undefined variable: {name}")))
    }

    fn pipe(&mut self, pipe: &Pipe, dot: &Val) -> Result<Val, String> {
        let mut value: Option<Val> = None;
        for cmd in &pipe.cmds {
            value = Some(self.command(cmd, dot, value)?);
        }
        let v = value.unwrap_or(Val::Nil);
        if let Some(name) = pipe.decl.first() {
            if pipe.assign {
                if let Some(slot) = self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                    slot.1 = v.clone();
                }
            } else {
                self.vars.push((name.clone(), v.clone()));
            }
        }
        Ok(v)
    }

    fn command(&mut self, cmd: &[Arg], dot: &Val, last: Option<Val>) -> Result<Val, String> {
        let Some(first) = cmd.first() else { return Ok(Val::Nil) };
        if let Arg::Func(name) = first {
            let mut args = Vec::with_capacity(cmd.len());
            for a in &cmd[1..] {
                args.push(self.arg(a, dot)?);
            }
            args.extend(last);
            return funcs::call(self, name, args);
        }
        if cmd.len() > 1 || last.is_some() {
            return Err(self.fail(format!("can't give argument to non-function {}", describe(first))));
        }
        self.arg(first, dot)
    }

    fn arg(&mut self, a: &Arg, dot: &Val) -> Result<Val, String> {
        match a {
            Arg::Dot => Ok(dot.clone()),
            Arg::Nil => Ok(Val::Nil),
            Arg::Bool(b) => Ok(Val::Bool(*b)),
            Arg::Int(i) => Ok(Val::Int(*i)),
            Arg::Float(f) => Ok(Val::Float(*f)),
            Arg::Str(s) => Ok(Val::Str(s.clone())),
            Arg::Var(v) => self.var(v),
            Arg::Func(f) => funcs::call(self, f, Vec::new()),
            Arg::Field(chain) => self.fields(dot.clone(), chain),
            Arg::Chain(base, chain) => {
                let b = self.arg(base, dot)?;
                self.fields(b, chain)
            }
            Arg::Pipe(p) => self.pipe(p, dot),
        }
    }

    fn fields(&self, mut v: Val, chain: &[String]) -> Result<Val, String> {
        for f in chain {
            v = match &v {
                Val::Map(m) => Val::Str(m.get(f).cloned().unwrap_or_default()),
                Val::Dict(m) => m.get(f).cloned().unwrap_or(Val::Nil),
                Val::Struct(t, fields) => match fields.get(f.as_str()) {
                    Some(x) => x.clone(),
                    None => return Err(self.fail(format!("can't evaluate field {f} in type {t}"))),
                },
                Val::Nil => return Err(self.fail(format!("nil pointer evaluating interface {{}}.{f}"))),
                other => return Err(self.fail(format!("can't evaluate field {f} in type {}", other.type_name()))),
            };
        }
        Ok(v)
    }
}

fn describe(a: &Arg) -> String {
    match a {
        Arg::Var(v) => v.clone(),
        Arg::Field(c) => format!(".{}", c.join(".")),
        Arg::Str(s) => strata_tsdb::gotext::quote(s),
        Arg::Int(i) => i.to_string(),
        _ => "value".to_owned(),
    }
}
