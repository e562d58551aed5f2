//! The locator against Prometheus 3.x: failing queries with the exact error Prometheus reports
//! (most from its `promql/parser/parse_test.go`), queries that must keep parsing, selectors,
//! hostile input, and properties over arbitrary and mutated queries.

use proptest::prelude::*;
use strata_tsdb::matchers::MatchOp;

use super::*;

/// What Prometheus prints for `query`, as the locator finds it.
fn located(query: &str) -> Option<String> {
    check::check_expression(query).err().map(|l| ParseError::new(query, l).to_string())
}

/// Failing queries and Prometheus 3.x's error for each.
const FAILING: &[(&str, &str)] = &[
    // Literals and lexer errors.
    ("", "unknown position: parse error: no expression found in input"),
    ("# just a comment\n\n", "1:1: parse error: no expression found in input"),
    ("   ", "1:1: parse error: no expression found in input"),
    ("1+", "1:3: parse error: unexpected end of input"),
    ("1 +", "1:4: parse error: unexpected end of input"),
    ("1 /", "1:4: parse error: unexpected end of input"),
    (".", "1:1: parse error: unexpected character: '.'"),
    ("2.5.", r#"1:1: parse error: bad number or duration syntax: "2.5.""#),
    ("100..4", r#"1:1: parse error: bad number or duration syntax: "100..""#),
    ("0deadbeef", r#"1:1: parse error: bad number or duration syntax: "0de""#),
    ("1a", r#"1:1: parse error: bad number or duration syntax: "1""#),
    ("1e400", r#"1:1: parse error: error parsing number: strconv.ParseFloat: parsing "1e400": value out of range"#),
    ("0x", r#"1:1: parse error: error parsing number: strconv.ParseFloat: parsing "0x": invalid syntax"#),
    ("*1", "1:1: parse error: unexpected <op:*>"),
    ("*test", "1:1: parse error: unexpected <op:*>"),
    ("@@", "1:1: parse error: unexpected <op:@>"),
    ("-=", r#"1:2: parse error: unexpected "=""#),
    ("++-++-+-+-<", "1:11: parse error: unexpected <op:<>"),
    ("e-+=/(0)", r#"1:4: parse error: unexpected "=""#),
    ("(1))", "1:5: parse error: unexpected right parenthesis ')'"),
    ("((1)", "1:5: parse error: unclosed left parenthesis"),
    ("(", "1:2: parse error: unclosed left parenthesis"),
    ("sum(", "1:5: parse error: unclosed left parenthesis"),
    ("sum(rate(", "1:10: parse error: unclosed left parenthesis"),
    ("(github_stars", "1:14: parse error: unclosed left parenthesis"),
    ("github_stars)", "1:14: parse error: unexpected right parenthesis ')'"),
    ("()", r#"1:2: parse error: unexpected ")""#),
    ("1 !~ 1", "1:3: parse error: unexpected character after '!': '~'"),
    ("1 =~ 1", "1:3: parse error: unexpected character after '=': '~'"),
    ("x !x", "1:3: parse error: unexpected character after '!': 'x'"),
    ("x !", "1:3: parse error: unexpected character after '!': '\u{fffd}'"),
    ("x = 1", r#"1:3: parse error: unexpected "=""#),
    ("x § y", "1:3: parse error: unexpected character: '§'"),
    ("métric", "1:2: parse error: unexpected character: 'é'"),
    ("foo\0", "1:4: parse error: unexpected character: '\\x00'"),
    ("foo\u{200b}", "1:4: parse error: unexpected character: '\\u200b'"),
    ("}", "1:1: parse error: unexpected character: '}'"),
    ("some}", "1:5: parse error: unexpected character: '}'"),
    ("]", "1:1: parse error: unexpected right bracket ']'"),
    ("bool", "1:1: parse error: unexpected <bool>"),
    ("on", "1:1: parse error: unexpected <on>"),
    ("github stars", r#"1:8: parse error: unexpected identifier "stars""#),
    ("foo start", r#"1:5: parse error: unexpected "start""#),
    ("foo 12345678901", r#"1:5: parse error: unexpected number "1234567890"..."#),
    ("foo \"a string\"", r#"1:5: parse error: unexpected string "\"a string\"""#),
    ("foo 'a long string'", r#"1:5: parse error: unexpected string "'a long st"..."#),
    ("foo 5m", r#"1:5: parse error: unexpected duration "5m""#),
    ("foo job:rate", r#"1:5: parse error: unexpected metric identifier "job:rate""#),
    ("foo sum", "1:5: parse error: unexpected <aggr:sum>"),
    ("foo SUM", "1:5: parse error: unexpected <aggr:SUM>"),
    ("x and", "1:6: parse error: unexpected end of input"),
    ("sum(\n  github_stars\n) +", "3:4: parse error: unexpected end of input"),
    ("foo\n  + bar\n  + ", "3:5: parse error: unexpected end of input"),
    // Strings.
    ("`\\``", "1:4: parse error: unterminated raw string"),
    ("\"\\", "1:1: parse error: escape sequence not terminated"),
    (r#""\c""#, "1:1: parse error: unknown escape sequence U+0063 'c'"),
    (r#""\x.""#, "1:1: parse error: illegal character U+002E '.' in escape sequence"),
    (r#""\400""#, "1:1: parse error: escape sequence is an invalid Unicode code point"),
    (r#""\uD800""#, "1:1: parse error: escape sequence is an invalid Unicode code point"),
    ("\"a\nb\"", "1:1: parse error: unterminated quoted string"),
    ("'abc", "1:1: parse error: unterminated quoted string"),
    ("`abc", "1:1: parse error: unterminated raw string"),
    ("\"\u{fffd}\"", "1:1: parse error: invalid UTF-8 rune"),
    (r#"x{a="\q"}"#, "1:5: parse error: unknown escape sequence U+0071 'q'"),
    (r#"x{a="b}"#, "1:5: parse error: unterminated quoted string"),
    (r#"sum by ("foo)(some_metric{})"#, "1:9: parse error: unterminated quoted string"),
    ("label_replace(a, `b`, `c\u{fffd}`, `d`, `.*`)", "1:23: parse error: invalid UTF-8 rune"),
    // Binary operators.
    ("1 and 1", r#"1:1: parse error: set operator "and" not allowed in binary scalar expression"#),
    ("1 or 1", r#"1:1: parse error: set operator "or" not allowed in binary scalar expression"#),
    ("1 unless 1", r#"1:1: parse error: set operator "unless" not allowed in binary scalar expression"#),
    ("foo and 1", r#"1:1: parse error: set operator "and" not allowed in binary scalar expression"#),
    ("1 and foo", r#"1:1: parse error: set operator "and" not allowed in binary scalar expression"#),
    ("foo or 1", r#"1:1: parse error: set operator "or" not allowed in binary scalar expression"#),
    ("1 or foo", r#"1:1: parse error: set operator "or" not allowed in binary scalar expression"#),
    ("foo unless 1", r#"1:1: parse error: set operator "unless" not allowed in binary scalar expression"#),
    ("1 unless foo", r#"1:1: parse error: set operator "unless" not allowed in binary scalar expression"#),
    ("foo AND 1", r#"1:1: parse error: set operator "and" not allowed in binary scalar expression"#),
    ("1 == 1", "1:3: parse error: comparisons between scalars must use BOOL modifier"),
    ("1 < bool 2 or 3", r#"1:1: parse error: set operator "or" not allowed in binary scalar expression"#),
    ("1 # c\n > 2", "1:3: parse error: comparisons between scalars must use BOOL modifier"),
    ("1 or on(bar) foo", "1:1: parse error: vector matching only allowed between instant vectors"),
    ("foo == on(bar) 10", "1:1: parse error: vector matching only allowed between instant vectors"),
    ("a - on(b) ignoring(c) d", "1:11: parse error: unexpected <ignoring>"),
    ("foo + group_left(baz) bar", "1:7: parse error: unexpected <group_left>"),
    ("foo + on(a) bool bar", "1:13: parse error: unexpected <bool>"),
    ("foo and on(bar) group_left(baz) bar", r#"1:1: parse error: no grouping allowed for "and" operation"#),
    ("foo and on(bar) group_right(baz) bar", r#"1:1: parse error: no grouping allowed for "and" operation"#),
    ("foo or on(bar) group_left(baz) bar", r#"1:1: parse error: no grouping allowed for "or" operation"#),
    ("foo or on(bar) group_right(baz) bar", r#"1:1: parse error: no grouping allowed for "or" operation"#),
    ("foo unless on(bar) group_left(baz) bar", r#"1:1: parse error: no grouping allowed for "unless" operation"#),
    ("foo unless on(bar) group_right(baz) bar", r#"1:1: parse error: no grouping allowed for "unless" operation"#),
    (
        r#"http_requests{group="production"} + on(instance) group_left(job,instance) cpu_count{type="smp"}"#,
        r#"1:35: parse error: label "instance" must not occur in ON and GROUP clause at once"#,
    ),
    ("foo + bool bar", "1:5: parse error: bool modifier can only be used on comparison operators"),
    ("foo + bool 10", "1:5: parse error: bool modifier can only be used on comparison operators"),
    ("foo and bool 10", "1:5: parse error: bool modifier can only be used on comparison operators"),
    ("foo == bool", "1:12: parse error: unexpected end of input"),
    ("a[5m] + b[5m]", "1:1: parse error: binary expression must contain only scalar and instant vector types"),
    ("1 + b[5m]", "1:5: parse error: binary expression must contain only scalar and instant vector types"),
    (r#""a" + 1"#, "1:1: parse error: binary expression must contain only scalar and instant vector types"),
    ("foo + fill(0) 1", "1:1: parse error: filling in missing series only allowed between instant vectors"),
    ("foo and fill(0) bar", "1:1: parse error: filling in missing series not allowed for set operators"),
    ("foo + fill(x) bar", r#"1:12: parse error: unexpected identifier "x""#),
    ("foo + on bar", r#"1:10: parse error: unexpected identifier "bar" in grouping opts, expected "(""#),
    ("foo + on(a,,) bar", r#"1:12: parse error: unexpected "," in grouping opts, expected label"#),
    ("foo / ignoring(a) bar baz", r#"1:23: parse error: unexpected identifier "baz""#),
    // Unary operators.
    (r#"-"string""#, r#"1:1: parse error: unary expression only allowed on expressions of type scalar or instant vector, got "string""#),
    ("-test[5m]", r#"1:1: parse error: unary expression only allowed on expressions of type scalar or instant vector, got "range vector""#),
    (r#"abs(-"x")"#, r#"1:5: parse error: unary expression only allowed on expressions of type scalar or instant vector, got "string""#),
    // Vector selectors.
    ("{", "1:2: parse error: unexpected end of input inside braces"),
    ("some{", "1:6: parse error: unexpected end of input inside braces"),
    (r#"github_stars{repo="a""#, "1:22: parse error: unexpected end of input inside braces"),
    ("some_metric{a=b}", r#"1:15: parse error: unexpected identifier "b" in label matching, expected string"#),
    (r#"some_metric{a:b="b"}"#, "1:14: parse error: unexpected character inside braces: ':'"),
    (r#"foo{a*"b"}"#, "1:6: parse error: unexpected character inside braces: '*'"),
    (r#"foo{a>="b"}"#, "1:6: parse error: unexpected character inside braces: '>'"),
    ("some_metric{a=\"\u{fffd}\"}", "1:15: parse error: invalid UTF-8 rune"),
    ("foo{gibberish}", r#"1:14: parse error: unexpected "}" in label matching, expected label matching operator"#),
    ("foo{1}", "1:5: parse error: unexpected character inside braces: '1'"),
    ("foo{{", "1:5: parse error: unexpected left brace '{'"),
    ("foo{a!b}", "1:6: parse error: unexpected character after '!' inside braces: 'b'"),
    ("{}", "1:1: parse error: vector selector must contain at least one non-empty matcher"),
    (r#"{x=""}"#, "1:1: parse error: vector selector must contain at least one non-empty matcher"),
    (r#"{x=~".*"}"#, "1:1: parse error: vector selector must contain at least one non-empty matcher"),
    (r#"{x!~".+"}"#, "1:1: parse error: vector selector must contain at least one non-empty matcher"),
    (r#"{x!="a"}"#, "1:1: parse error: vector selector must contain at least one non-empty matcher"),
    (r#"foo{__name__="bar"}"#, r#"1:1: parse error: metric name must not be set twice: "foo" or "bar""#),
    (r#"foo{"bar"}"#, r#"1:1: parse error: metric name must not be set twice: "foo" or "bar""#),
    ("foo{__name__= =}", r#"1:15: parse error: unexpected "=" in label matching, expected string"#),
    ("foo{,}", r#"1:5: parse error: unexpected "," in label matching, expected identifier or "}""#),
    (r#"foo{a="b",,}"#, r#"1:11: parse error: unexpected "," in label matching, expected identifier or "}""#),
    (r#"foo{__name__ == "bar"}"#, r#"1:15: parse error: unexpected "=" in label matching, expected string"#),
    (r#"foo{__name__="bar" lol}"#, r#"1:20: parse error: unexpected identifier "lol" in label matching, expected "," or "}""#),
    (r#"foo{"a"=}"#, r#"1:9: parse error: unexpected "}" in label matching, expected string"#),
    (r#"github_stars{repo="a" repo="b"}"#, r#"1:23: parse error: unexpected identifier "repo" in label matching, expected "," or "}""#),
    ("github_stars{repo=}", r#"1:19: parse error: unexpected "}" in label matching, expected string"#),
    (r#"x{a"b"}"#, r#"1:4: parse error: unexpected string "\"b\"" in label matching, expected label matching operator"#),
    (r#"{"foo" "bar"}"#, r#"1:8: parse error: unexpected string "\"bar\"" in label matching, expected "," or "}""#),
    (r#"foo{a="b" or c="d"}"#, r#"1:11: parse error: unexpected identifier "or" in label matching, expected "," or "}""#),
    // Regular expressions in matchers.
    (r#"github_stars{repo=~"("}"#, "1:14: parse error: error parsing regexp: missing closing ): `(`"),
    (r#"foo{a=~"[z-a]"}"#, "1:5: parse error: error parsing regexp: invalid character class range: `z-a`"),
    (r#"foo{a!~"a**"}"#, "1:5: parse error: error parsing regexp: invalid nested repetition operator: `**`"),
    (r#"foo{a=~"*"}"#, "1:5: parse error: error parsing regexp: missing argument to repetition operator: `*`"),
    (r#"foo{a=~"a)"}"#, "1:5: parse error: error parsing regexp: unexpected ): `a)`"),
    (r#"foo{a=~"\\q"}"#, "1:5: parse error: error parsing regexp: invalid escape sequence: `\\q`"),
    (r#"foo{"a"=~"x{2,1}"}"#, "1:5: parse error: error parsing regexp: invalid repeat count: `{2,1}`"),
    // Range selectors and durations.
    ("foo[5x]", r#"1:5: parse error: bad number or duration syntax: "5""#),
    ("foo[5mm]", r#"1:5: parse error: bad number or duration syntax: "5mm""#),
    ("foo[5m1]", r#"1:5: parse error: bad number or duration syntax: "5m1""#),
    ("foo[5m:1m1]", r#"1:8: parse error: bad number or duration syntax: "1m1""#),
    ("foo[5y1hs]", r#"1:5: parse error: unknown unit "hs" in duration "5y1hs""#),
    ("foo[5m1h]", r#"1:5: parse error: not a valid duration string: "5m1h""#),
    ("foo[5m1m]", r#"1:5: parse error: not a valid duration string: "5m1m""#),
    ("github_commits_total[1.5h]", r#"1:22: parse error: unknown unit "." in duration "1.5h""#),
    ("github_commits_total[1x]", r#"1:22: parse error: bad number or duration syntax: "1""#),
    ("foo[300y]", "1:5: parse error: duration out of range"),
    ("foo[9.5e10]", "1:5: parse error: duration out of range"),
    ("foo[0m]", "1:5: parse error: duration must be greater than 0"),
    ("foo[-1]", "1:5: parse error: duration must be greater than 0"),
    ("foo[5m:0s]", "1:8: parse error: duration must be greater than 0"),
    ("foo[5m:-1m]", "1:8: parse error: duration must be greater than 0"),
    (r#"foo["5m"]"#, r#"1:5: parse error: unexpected character in duration expression: '"'"#),
    ("foo[]", r#"1:5: parse error: unexpected "]" in subquery or range selector, expected number, duration, step(), or range()"#),
    ("foo[step]", r#"1:9: parse error: unexpected "]" in subquery or range selector, expected number, duration, step(), or range()"#),
    ("foo[5s x 5s]", "1:8: parse error: unexpected character: 'x', expected ':'"),
    ("foo[5s s 5s]", "1:8: parse error: unexpected character: 's', expected ':'"),
    ("foo[5m 5m]", r#"1:8: parse error: unexpected duration "5m" in subquery or range, expected ":" or "]""#),
    ("foo[5m:1m 1m]", r#"1:11: parse error: unexpected duration "1m" in subquery selector, expected "]""#),
    ("foo[5m::1m]", r#"1:7: parse error: unexpected "::" in subquery or range, expected ":" or "]""#),
    ("foo[5m:1m:1m]", "1:10: parse error: unexpected colon ':'"),
    ("foo[:5m]", "1:6: parse error: unexpected colon before duration in duration expression"),
    ("foo[5m[", "1:7: parse error: unexpected left bracket '['"),
    ("foo[5m", "1:7: parse error: unclosed left bracket"),
    ("github_commits_total[7d", "1:24: parse error: unclosed left bracket"),
    ("foo[5m:1m", "1:10: parse error: unclosed left bracket"),
    (r#"foo{bar="baz"}["#, "1:16: parse error: unexpected end of input in duration expression"),
    ("(foo + bar)[5m]", "1:12: parse error: ranges only allowed for vector selectors"),
    ("(x)[5m]", "1:4: parse error: ranges only allowed for vector selectors"),
    ("rate(x[5m])[5m]", "1:12: parse error: ranges only allowed for vector selectors"),
    ("foo[5m][5m]", "1:8: parse error: ranges only allowed for vector selectors"),
    ("1[5m] smoothed", "1:2: parse error: ranges only allowed for vector selectors"),
    ("1[5m] anchored", "1:2: parse error: ranges only allowed for vector selectors"),
    ("rate(food[1m])[1h] offset 1h", "1:15: parse error: ranges only allowed for vector selectors"),
    ("rate(food[1m])[1h] @ 100", "1:15: parse error: ranges only allowed for vector selectors"),
    ("some_metric OFFSET 1m[5m]", "1:22: parse error: no offset modifiers allowed before range"),
    ("some_metric offset step()[5m]", "1:26: parse error: no offset modifiers allowed before range"),
    ("some_metric @ 1234 [5m]", "1:20: parse error: no @ modifiers allowed before range"),
    ("some_metric @ start() [5m]", "1:23: parse error: no @ modifiers allowed before range"),
    ("some_metric @ end()[5m]", "1:20: parse error: no @ modifiers allowed before range"),
    ("foo x[5m]", r#"1:5: parse error: unexpected identifier "x""#),
    // Duration expressions: a literal zero divisor is refused at its operator.
    ("foo[5s/0d]", "1:7: parse error: division by zero"),
    ("foo[step()/0d]", "1:11: parse error: division by zero"),
    ("foo[5m%0]", "1:7: parse error: modulo by zero"),
    ("foo offset (4d/0)", "1:15: parse error: division by zero"),
    ("foo[5m/-0]", "1:7: parse error: division by zero"),
    ("foo[-5m]", "1:5: parse error: duration must be greater than 0"),
    // Subqueries.
    ("test[5d] OFFSET 10s [10m:5s]", "1:1: parse error: subquery is only allowed on instant vector, got matrix instead"),
    (r#"(foo + bar{nm="val"})[5m:][10m:5s]"#, "1:1: parse error: subquery is only allowed on instant vector, got matrix instead"),
    (r#""a"[5m:]"#, "1:1: parse error: subquery is only allowed on instant vector, got string instead"),
    // Offset and @ modifiers.
    ("1 offset 1d", "1:1: parse error: offset modifier must be preceded by an instant vector selector or range vector selector or a subquery"),
    ("(foo) offset 1d", "1:1: parse error: offset modifier must be preceded by an instant vector selector or range vector selector or a subquery"),
    ("foo offset 1s offset 2s", "1:1: parse error: offset may not be set multiple times"),
    ("foo[5m] offset 1m offset 1m", "1:1: parse error: offset may not be set multiple times"),
    ("some_metric[5m] OFFSET 1mm", r#"1:24: parse error: bad number or duration syntax: "1mm""#),
    ("some_metric[5m] OFFSET", "1:23: parse error: unexpected end of input in offset, expected number, duration, step(), or range()"),
    ("foo offset -", "1:13: parse error: unexpected end of input in offset, expected number, duration, step(), or range()"),
    ("foo offset bar", r#"1:12: parse error: unexpected identifier "bar" in offset, expected number, duration, step(), or range()"#),
    ("foo offset 9.5e10", "1:12: parse error: duration out of range"),
    ("foo offset -9.5e10", "1:12: parse error: duration out of range"),
    ("foo offset 1e400", r#"1:12: parse error: error parsing number: strconv.ParseFloat: parsing "1e400": value out of range"#),
    ("foo @ bar", r#"1:7: parse error: unexpected identifier "bar" in @, expected timestamp"#),
    ("some_metric[5m] @", "1:18: parse error: unexpected end of input in @, expected timestamp"),
    ("foo @ start", "1:12: parse error: unexpected end of input in @, expected timestamp"),
    ("foo @ start(1)", r#"1:13: parse error: unexpected number "1" in @, expected timestamp"#),
    ("foo @ -", "1:8: parse error: unexpected end of input in @, expected timestamp"),
    ("foo @ --1", "1:8: parse error: unexpected <op:-> in @, expected timestamp"),
    ("foo @ +Inf", "1:1: parse error: timestamp out of bounds for @ modifier: +Inf"),
    ("foo @ -Inf", "1:1: parse error: timestamp out of bounds for @ modifier: -Inf"),
    ("foo @ NaN", "1:1: parse error: timestamp out of bounds for @ modifier: NaN"),
    ("foo @ 9223372036854775808.000000", "1:1: parse error: timestamp out of bounds for @ modifier: 9223372036854775808.000000"),
    ("foo @ -9223372036854775808.000000", "1:1: parse error: timestamp out of bounds for @ modifier: -9223372036854775808.000000"),
    ("foo @ 1 @ 2", "1:1: parse error: @ <timestamp> may not be set multiple times"),
    ("rate(some_metric[5m]) @ 1234", "1:1: parse error: @ modifier must be preceded by an instant vector selector or range vector selector or a subquery"),
    ("foo[5m:1m] anchored", "1:1: parse error: anchored modifier is not supported for subqueries"),
    ("foo[5m:] smoothed", "1:1: parse error: smoothed modifier is not supported for subqueries"),
    ("(foo + bar) smoothed", "1:1: parse error: smoothed modifier not implemented"),
    ("rate(foo[5m]) anchored", "1:1: parse error: anchored modifier not implemented"),
    ("foo anchored smoothed", "1:1: parse error: anchored and smoothed modifiers cannot be used together"),
    ("foo[5m] smoothed anchored", "1:1: parse error: anchored and smoothed modifiers cannot be used together"),
    // Aggregations.
    ("sum without(==)(some_metric)", "1:13: parse error: unexpected <op:==> in grouping opts, expected label"),
    ("sum without(,)(some_metric)", r#"1:13: parse error: unexpected "," in grouping opts, expected label"#),
    ("sum without(foo,,)(some_metric)", r#"1:17: parse error: unexpected "," in grouping opts, expected label"#),
    ("sum by (without) (foo)", "1:9: parse error: unexpected <without> in grouping opts, expected label"),
    (r#"sum by ("") (foo)"#, r#"1:9: parse error: invalid label name for grouping: """#),
    ("sum some_metric by (test)", r#"1:5: parse error: unexpected identifier "some_metric""#),
    ("sum (some_metric) by test", r#"1:22: parse error: unexpected identifier "test" in grouping opts, expected "(""#),
    ("sum(foo) by", r#"1:12: parse error: unexpected end of input in grouping opts, expected "(""#),
    ("sum by x (y)", r#"1:8: parse error: unexpected identifier "x" in grouping opts, expected "(""#),
    ("sum by (1) (y)", r#"1:9: parse error: unexpected number "1" in grouping opts, expected label"#),
    ("sum by (a b) (y)", r#"1:11: parse error: unexpected identifier "b" in grouping opts, expected "," or ")""#),
    ("sum by (a) y", r#"1:12: parse error: unexpected identifier "y" in aggregation"#),
    ("sum(foo bar)", r#"1:9: parse error: unexpected identifier "bar" in aggregation"#),
    ("sum(rate(foo bar))", r#"1:14: parse error: unexpected identifier "bar" in aggregation"#),
    ("sum () by (test)", "1:1: parse error: no arguments for aggregate expression provided"),
    ("sum()", "1:1: parse error: no arguments for aggregate expression provided"),
    ("MIN keep_common (some_metric)", r#"1:5: parse error: unexpected identifier "keep_common""#),
    ("MIN (some_metric) keep_common", r#"1:19: parse error: unexpected identifier "keep_common""#),
    ("sum (some_metric) without (test) by (test)", "1:34: parse error: unexpected <by>"),
    ("sum without (test) (some_metric) by (test)", "1:34: parse error: unexpected <by>"),
    ("sum by (a) (foo) by (b)", "1:18: parse error: unexpected <by>"),
    ("topk(some_metric)", "1:1: parse error: wrong number of arguments for aggregate expression provided, expected 2, got 1"),
    ("count_values(foo)", "1:1: parse error: wrong number of arguments for aggregate expression provided, expected 2, got 1"),
    ("sum(github_stars, github_followers)", "1:1: parse error: wrong number of arguments for aggregate expression provided, expected 1, got 2"),
    ("topk(some_metric,)", "1:17: parse error: trailing commas not allowed in function call args"),
    ("topk(some_metric, other_metric)", "1:6: parse error: expected type scalar in aggregation parameter, got instant vector"),
    ("count_values(5, other_metric)", "1:14: parse error: expected type string in aggregation parameter, got scalar"),
    (r#"topk(5, "x")"#, "1:9: parse error: expected type instant vector in aggregation expression, got string"),
    ("sum(foo[5m])", "1:5: parse error: expected type instant vector in aggregation expression, got range vector"),
    // Function calls.
    ("floor()", r#"1:1: parse error: expected 1 argument(s) in call to "floor", got 0"#),
    ("floor(some_metric, other_metric)", r#"1:1: parse error: expected 1 argument(s) in call to "floor", got 2"#),
    ("floor(some_metric, 1)", r#"1:1: parse error: expected 1 argument(s) in call to "floor", got 2"#),
    ("floor(1)", r#"1:7: parse error: expected type instant vector in call to function "floor", got scalar"#),
    ("hour(some_metric, some_metric, some_metric)", r#"1:1: parse error: expected at most 1 argument(s) in call to "hour", got 3"#),
    ("round(x, 1, 2)", r#"1:1: parse error: expected at most 2 argument(s) in call to "round", got 3"#),
    ("time(some_metric)", r#"1:1: parse error: expected 0 argument(s) in call to "time", got 1"#),
    ("rate(github_commits_total[7d], 1)", r#"1:1: parse error: expected 1 argument(s) in call to "rate", got 2"#),
    ("histogram_quantile(0.9)", r#"1:1: parse error: expected 2 argument(s) in call to "histogram_quantile", got 1"#),
    (r#"label_join(foo, "a")"#, r#"1:1: parse error: expected at least 3 argument(s) in call to "label_join", got 2"#),
    ("non_existent_function_far_bar()", r#"1:1: parse error: unknown function with name "non_existent_function_far_bar""#),
    ("nonexistent_fn()", r#"1:1: parse error: unknown function with name "nonexistent_fn""#),
    ("holt_winters(x[1h], 0.5, 0.5)", r#"1:1: parse error: unknown function with name "holt_winters""#),
    ("Rate(x[5m])", r#"1:1: parse error: unknown function with name "Rate""#),
    ("a>b()", r#"1:3: parse error: unknown function with name "b""#),
    ("rate(some_metric)", r#"1:6: parse error: expected type range vector in call to function "rate", got instant vector"#),
    ("rate(avg)", r#"1:6: parse error: expected type range vector in call to function "rate", got instant vector"#),
    ("max_over_time(foo)", r#"1:15: parse error: expected type range vector in call to function "max_over_time", got instant vector"#),
    ("scalar(1)", r#"1:8: parse error: expected type instant vector in call to function "scalar", got scalar"#),
    (r#"vector("a")"#, r#"1:8: parse error: expected type scalar in call to function "vector", got string"#),
    ("start(foo)", r#"1:1: parse error: expected 0 argument(s) in call to "start", got 1"#),
    ("rate(x[5m],)", "1:11: parse error: trailing commas not allowed in function call args"),
    ("rate(foo bar)", r#"1:10: parse error: unexpected identifier "bar""#),
    (
        r#"info(rate(http_request_counter_total{}[5m]), target_info{foo="bar"})"#,
        "1:46: parse error: expected label selectors only, got vector selector instead",
    ),
    (r#"info(http_request_counter_total{namespace="zzz"}, {foo="bar"} == 1)"#, "1:51: parse error: expected label selectors only"),
];

#[test]
fn failing_queries_get_prometheus_errors() {
    assert!(FAILING.len() >= 150, "{} cases", FAILING.len());
    let mut wrong = Vec::new();
    for (query, want) in FAILING {
        let got = located(query);
        // `parse` reports the same, whether promql-parser accepts the query or not.
        let parsed = parse(query).err().map(|e| e.to_string());
        if got.as_deref() != Some(*want) || parsed != got {
            wrong.push(format!("{query:?}\n   want {want}\n    got {got:?}\n  parse {parsed:?}"));
        }
    }
    assert!(wrong.is_empty(), "{} of {} differ:\n{}", wrong.len(), FAILING.len(), wrong.join("\n"));
}

#[test]
fn parse_reports_the_located_error() {
    for (query, want) in [
        ("sum(", "1:5: parse error: unclosed left parenthesis"),
        ("1 +", "1:4: parse error: unexpected end of input"),
        ("sum by (a) (foo) by (b)", "1:18: parse error: unexpected <by>"),
        ("foo @ bar", r#"1:7: parse error: unexpected identifier "bar" in @, expected timestamp"#),
        ("rate(foo)", r#"1:6: parse error: expected type range vector in call to function "rate", got instant vector"#),
        ("nonexistent_fn()", r#"1:1: parse error: unknown function with name "nonexistent_fn""#),
        ("foo[5x]", r#"1:5: parse error: bad number or duration syntax: "5""#),
    ] {
        let e = parse(query).expect_err(query);
        assert_eq!(e.to_string(), want, "{query}");
        assert_eq!(e.position + 1, want[2..].split(':').next().unwrap().parse::<usize>().unwrap(), "{query}");
    }
}

#[test]
fn positions_count_lines_and_bytes() {
    let e = parse("foo +\n  bar{a=\"é\"} +\n\t").unwrap_err();
    assert_eq!((e.position, e.to_string().as_str()), (23, "3:2: parse error: unexpected end of input"));
    let e = ParseError::new("ab", Located { pos: 7, message: "m".into() });
    assert_eq!(e.to_string(), "invalid position: parse error: m");
    // Columns count bytes, as in Prometheus.
    assert_eq!(located("é +").as_deref(), Some("1:1: parse error: unexpected character: 'é'"));
    assert_eq!(located("\"é\" + ").as_deref(), Some("1:8: parse error: unexpected end of input"));
}

/// Queries Prometheus accepts, which the locator must accept too.
const VALID: &[&str] = &[
    "1",
    "+Inf",
    "-Inf",
    ".5",
    "5.",
    "123.4567",
    "5e-3",
    "0xc",
    "0755",
    "+5.5e-3",
    "-0755",
    "1_000",
    "NaN",
    "1 + 1",
    "1 == bool 1",
    "-1^2",
    "-1^-2",
    "+1 + -2 * 1",
    "1 + 2/(3*1)",
    "1 < bool 2 - 1 * 2",
    "-some_metric",
    r#" +{"some_metric"}"#,
    r#"offset{step="1s"}[5m]"#,
    r#"anchored{job="test"}"#,
    "foo * sum",
    "foo == bool 1",
    "foo + bar or bla and blub",
    "bar + on(foo) bla / on(baz, buz) group_right(test) blub",
    "foo and on() bar",
    "foo / ignoring(test,blub) group_left(blub) bar",
    "foo + on(a) group_left (b) c",
    "foo offset 5m",
    "foo offset -7m",
    "foo offset +5m",
    "foo offset 0 offset 1m",
    "foo OFFSET 1h30m",
    "foo @ 1603774568",
    "foo @ -100",
    "foo @ .3",
    "foo @ 3e2",
    "foo @ 0xA",
    "foo @ start()",
    "foo[10m:6s] @ end()",
    "foo:bar{a=\"bc\"}",
    r#"{"foo"}"#,
    r#"{'foo\'bar', 'a\\dos\\path'='boo\\urns'}"#,
    "foo{NaN='bc'}",
    "foo{bar='}'}",
    r#"foo{a="b", foo!="bar", test=~"test", bar!~"baz",}"#,
    r#"{__name__=~"bar", __name__!~"baz"}"#,
    r#"{"bar", __name__="baz"}"#,
    r#"foo{by="1",on!="2",sum=~"x"}"#,
    "test[1000ms]",
    "test[5] offset 2w",
    r#"test{a="b"}[5y] @ 1603774699"#,
    "foo[4.018] @ 2.345",
    "sum by (foo)(some_metric)",
    "sum by (anchored)(some_metric)",
    r#"sum by ("foo bar")({"some.metric"})"#,
    "sum without(and, by, avg, count, alert, annotations)(some_metric)",
    "sum by (foo,bar,)(some_metric)",
    "sum (some_metric) without (foo)",
    "topk(5, some_metric)",
    r#"count_values("value", some_metric)"#,
    "limitk(2, foo)",
    "time()",
    "round(some_metric, 5)",
    r#"label_join(foo, "a", ",")"#,
    r#"sort_by_label(foo, "a", "b", "c")"#,
    r#"min_over_time(rate(foo{bar="baz"}[2s])[5m:] offset 4m)[4m:3s]"#,
    "sum(sum)",
    "a + sum",
    r#""double-quoted string \" with escaped quote""#,
    r#"'\a\b\f\n\r\t\v\\\' - \xFF\377\u1234\U00010111\U0001011111☺'"#,
    "`\\a\\q`",
    r#"(foo + bar{nm="val"} @ 1234)[5m:] @ 1603775019"#,
    "start",
    r#"end{start="foo"}"#,
    "foo unless on(start) bar",
    "start() + end()",
    "max_of(1, 2)",
    "foo + fill(0) bar",
    "foo + on(a) group_left fill_left(1) fill_right(-2) bar",
    "fill + fill",
    r#"info(foo, {data=~".*"})"#,
    "foo[step()]",
    "foo offset -step()",
    "foo offset max_of(step(), 5s)",
    "foo[min_of(5m, step())]",
    "foo offset 5s-8",
    "sum(\n  rate(foo[5m]) # comment\n)",
    "foo[5m+1m]",
    "foo[1m + 2m * 3]",
    "foo[(5m)]",
    "foo offset (5m)",
    "foo[29s+1s:5s+5s] offset -(20*(((((8 - 2) / 3) * 7s) % 4) + 8000ms))",
    "foo offset -min_of(step(), 1s)+8000",
    "foo anchored",
    "foo smoothed",
    "rate(foo[5m] smoothed)",
    "increase(foo[5m] anchored offset 1m)",
    "foo @ 100 smoothed + 0",
    r#"info(foo, {__name__!="target_info"})"#,
];

#[test]
fn valid_queries_have_no_error() {
    for q in VALID {
        assert_eq!(located(q), None, "{q:?}");
    }
}

/// Duration expressions are evaluated for the query's step and range, and promql-parser's tree
/// holds the results; what it cannot hold is in the selectors' records.
#[test]
fn prepared_queries_hold_evaluated_durations_and_modifiers() {
    use promql_parser::parser::{Expr, Offset};
    use std::time::Duration;

    let p =
        parse_query("rate(foo[step() + 1ms] smoothed) + bar offset -(min_of(range(), 8s))", 10_000, 60_000).unwrap();
    let Expr::Binary(b) = &p.expr else { panic!("{:?}", p.expr) };
    let Expr::Call(rate) = b.lhs.as_ref() else { panic!() };
    let Expr::MatrixSelector(ms) = rate.args.args[0].as_ref() else { panic!() };
    assert_eq!(ms.range, Duration::from_millis(10_001));
    let Expr::VectorSelector(bar) = b.rhs.as_ref() else { panic!() };
    assert_eq!(bar.offset, Some(Offset::Neg(Duration::from_secs(8))));
    let smoothed = SelectorExtras { smoothed: true, ..SelectorExtras::default() };
    assert_eq!(p.selectors, vec![smoothed, SelectorExtras::default()]);

    let p = parse_query(r#"info(foo, {data=~".*"})"#, 0, 0).unwrap();
    let labels = p.selectors[1].info_labels.as_ref().unwrap();
    assert_eq!((labels.len(), labels[0].name.as_str(), labels[0].value.as_str()), (1, "data", ".*"));

    // Evaluated when the query is prepared, as Prometheus does: an instant query's step is 0.
    assert_eq!(parse("foo[step()]").unwrap_err().to_string(), "4:10: duration must be greater than 0");
    assert_eq!(parse("foo offset (1s / step())").unwrap_err().to_string(), "11:24: division by zero");
    assert!(parse_query("foo[step()]", 15_000, 0).is_ok());
    assert!(parse("foo offset step()").is_ok());
    // promql-parser refuses a zero duration; Prometheus takes it as no offset.
    for q in ["foo offset 0s", "foo offset -0m", "foo[5m] offset 0ms"] {
        assert!(parse(q).is_ok(), "{q}");
    }
}

/// Every query of the differential corpus that promql-parser accepts, the locator accepts too.
#[test]
fn corpus_queries_have_no_error() {
    let corpus = include_str!("../../../cmd/tests/promql_diff/queries.txt");
    let mut n = 0;
    for line in corpus.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        // `$T{90m}` stands for a Unix time.
        let query = match line.split_once("$T{") {
            Some((before, rest)) => format!("{before}1700000000{}", rest.split_once('}').map_or("", |r| r.1)),
            None => line.to_string(),
        };
        if promql_parser::parser::parse(&query).is_ok() {
            assert_eq!(located(&query), None, "{query:?}");
            n += 1;
        }
    }
    assert!(n > 500, "{n} queries");
}

#[test]
fn selectors_follow_prometheus() {
    let ok = |s: &str| parse_selector(s).unwrap_or_else(|e| panic!("{s}: {e}"));
    let m = ok(r#"up{job="a", i!~"b.*"}"#);
    assert_eq!(
        m,
        [
            LabelMatcher { name: "job".into(), op: MatchOp::Equal, value: "a".into() },
            LabelMatcher { name: "i".into(), op: MatchOp::NotRegex, value: "b.*".into() },
            LabelMatcher { name: "__name__".into(), op: MatchOp::Equal, value: "up".into() },
        ]
    );
    assert_eq!(ok("sum").len(), 1);
    assert_eq!(ok(r#"{a=""}"#).len(), 1);
    assert_eq!(ok(r#"{"a.b"}"#)[0].value, "a.b");
    for (s, want) in [
        ("", "unknown position: parse error: unexpected end of input"),
        ("  ", "1:3: parse error: unexpected end of input"),
        ("sum(x)", r#"1:4: parse error: unexpected "(""#),
        ("1", r#"1:1: parse error: unexpected number "1""#),
        ("up offset 5m", "1:4: parse error: unexpected <offset>"),
        ("up{", "1:4: parse error: unexpected end of input inside braces"),
        (r#"up{a=~"("}"#, "1:4: parse error: error parsing regexp: missing closing ): `(`"),
        ("bool", "1:1: parse error: unexpected <bool>"),
        ("(up)", r#"1:1: parse error: unexpected "(""#),
    ] {
        assert_eq!(parse_selector(s).unwrap_err().to_string(), want, "{s:?}");
    }
}

/// Queries that promql-parser accepts, or panics on, and Prometheus refuses get Prometheus's
/// error: the locator reads first.
#[test]
fn queries_promql_parser_accepts_and_prometheus_refuses_are_refused() {
    for (q, want) in [
        (
            r#"foo{a="b" or c="d"}"#,
            r#"1:11: parse error: unexpected identifier "or" in label matching, expected "," or "}""#,
        ),
        ("foo offset 9.5e10", "1:12: parse error: duration out of range"),
        ("rate(foo[300y])", "1:10: parse error: duration out of range"),
        ("foo offset 1000000000y", "1:12: parse error: duration out of range"),
        ("vector(1)[300y:1m]", "1:11: parse error: duration out of range"),
        ("1e400", r#"1:1: parse error: error parsing number: strconv.ParseFloat: parsing "1e400": value out of range"#),
        // promql-parser panics on these.
        ("foo[1e30]", "1:5: parse error: duration out of range"),
        (
            "foo offset 1e400",
            r#"1:12: parse error: error parsing number: strconv.ParseFloat: parsing "1e400": value out of range"#,
        ),
    ] {
        assert_eq!(parse(q).map_err(|e| e.to_string()).err().as_deref(), Some(want), "{q}");
    }
}

/// Runs `f` on a thread with the stack size of a Tokio blocking thread.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new().stack_size(2 << 20).spawn(f).expect("spawn").join().expect("no stack overflow")
}

#[test]
fn deep_nesting_is_refused_without_overflow() {
    let deep = [
        format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000)),
        format!("x{}", "+x".repeat(100_000)),
        format!("x{}", "^x".repeat(100_000)),
        format!("{}x", "-".repeat(100_000)),
        format!("{}x{}", "sum(".repeat(50_000), ")".repeat(50_000)),
        format!("{}x", "abs(".repeat(100_000)),
        format!("x{}", "[1m:]".repeat(100_000)),
        format!("{}x{}", "(-{}-1".repeat(10_000), ")".repeat(10_000)),
        // The lexer stops early; the locator reads only up to there.
        format!("\"{}x{}", "(".repeat(100_000), ")".repeat(100_000)),
    ];
    for q in deep {
        let e = on_small_stack(move || parse(&q).unwrap_err());
        assert!(e.message.contains("nests too deeply") || e.message.contains("unterminated"), "{e}");
    }
    let e = parse(&format!("{}1{}", "(".repeat(2000), ")".repeat(2000))).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("1:{MAX_DEPTH}: parse error: expression nests too deeply: more than {MAX_DEPTH} levels")
    );
}

#[test]
fn nesting_up_to_the_limit_parses_on_a_small_stack() {
    let n = MAX_DEPTH - 1;
    for q in [
        format!("{}x{}", "sum(".repeat(n), ")".repeat(n)),
        format!("{}x{}", "(".repeat(n), ")".repeat(n)),
        format!("x{}", " or x".repeat(n - 1)),
        format!("{}x{}", "abs(-".repeat(n / 2), ")".repeat(n / 2)),
    ] {
        on_small_stack(move || {
            let expr = parse(&q).unwrap_or_else(|e| panic!("{e}"));
            drop(expr);
            // The locator goes as deep when the query is broken at its innermost point.
            let broken = q.replacen('x', "x +", 1);
            assert!(parse(&broken).is_err());
        });
    }
}

#[test]
fn long_and_odd_input() {
    let long = format!("foo{{a=\"{}\"}}", "x".repeat(1 << 20));
    assert!(parse(&long).is_ok());
    let matchers: Vec<String> = (0..20_000).map(|i| format!("l{i}=\"v\"")).collect();
    assert!(parse(&format!("foo{{{}}}", matchers.join(","))).is_ok());
    let args = vec!["\"a\""; 20_000].join(", ");
    assert!(parse(&format!("label_join(foo, {args})")).is_ok());
    for odd in [
        "\0",
        "\u{feff}foo",
        "foo\u{202e}",
        "🙂",
        "foo{a=\"🙂\u{0}\"}",
        "\u{fffd}",
        "\r\n\t",
        "#",
        "\\",
        "\"",
        "'",
        "`",
        "{\"",
        "[",
        "foo[",
        "foo{a=",
        "foo{a=~",
        "sum by (",
        "x @",
        "x offset",
        "rate(x[5m]",
        "\u{7f}",
    ] {
        let e = parse(odd);
        if let Err(e) = e {
            assert!(e.position <= odd.len(), "{odd:?}: {e}");
        }
    }
}

fn valid_query() -> impl Strategy<Value = String> {
    prop::sample::select(VALID.iter().map(|q| q.to_string()).collect::<Vec<_>>())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_string_gets_a_placed_error_or_parses(q in "\\PC{0,64}|[-+*/^%(){}\\[\\]@:,=!~<>\"'` a-z0-9._#\n]{0,64}") {
        let located = check::check_expression(&q);
        if let Err(e) = parse(&q) {
            prop_assert!(e.position <= q.len(), "{:?}: {}", q, e);
        }
        if let Err(l) = located {
            prop_assert!(l.pos <= q.len(), "{:?}: {:?}", q, l);
        }
        let _ = parse_selector(&q);
    }

    #[test]
    fn mutated_queries_get_a_placed_error_or_parse(
        q in valid_query(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), prop::sample::select(vec!["", "(", ")", "[", "]", "{", "}", "\"", ",", " ", "+", "offset", "@", "by", "5m", ":", "=~", "sum(", "x", "anchored", "smoothed", "step()", "*2", "info("])), 1..4),
    ) {
        let mut q = q;
        for (at, insert) in edits {
            let mut cut = at.index(q.len() + 1);
            while !q.is_char_boundary(cut) {
                cut -= 1;
            }
            // Replace one character, or insert when the replacement is empty.
            let end = q[cut..].chars().next().map_or(cut, |c| cut + c.len_utf8());
            q.replace_range(cut..if insert.is_empty() { end } else { cut }, insert);
        }
        if let Err(l) = check::check_expression(&q) {
            prop_assert!(l.pos <= q.len(), "{:?}: {:?}", q, l);
        }
        if let Err(e) = parse(&q) {
            prop_assert!(e.position <= q.len(), "{:?}: {}", q, e);
        }
    }
}
