//! A fast reader for the usual OpenAI stream chunk, ahead of serde_json. At 256 streams every
//! response is 18 chunks, and serde_json's typed decode of each cost 0.4-0.5 µs here (a fifth of
//! tbctl's CPU per request). This reader walks the bytes once and borrows the few strings the
//! record needs. It answers only when it understood every byte: anything unusual (an escape,
//! an `error`, a repeated field, a choice that is not an object, deep nesting, invalid UTF-8,
//! bad JSON) returns None and serde_json decides, so the result is always serde_json's own.

use std::borrow::Cow;

use super::chunk::{First, WireChoice, WireDelta, WireOpenAi, WireUsage};

/// Deeper than this is left to serde_json (which has its own limit).
const MAX_DEPTH: u32 = 32;

/// `payload` read as serde_json would read it into [`WireOpenAi`], when it is the usual shape.
pub(super) fn openai(payload: &[u8]) -> Option<WireOpenAi<'_>> {
    // One pass up front; each string is then a slice of valid text.
    let text = std::str::from_utf8(payload).ok()?;
    let mut s = Scan {
        text,
        b: payload,
        i: 0,
    };
    let mut w = WireOpenAi::default();
    let (mut choices, mut usage) = (false, false);
    s.object(|s, key| {
        match key {
            b"choices" => s.once(&mut choices)?.choices(&mut w.choices),
            b"usage" => {
                s.once(&mut usage)?;
                w.usage = s.nullable(Scan::usage)?;
                Some(())
            }
            // Rare, and a string or an object: serde_json reads it.
            b"error" => None,
            _ => s.skip(0),
        }
    })?;
    s.ws();
    (s.i == s.b.len()).then_some(w)
}

struct Scan<'a> {
    text: &'a str,
    /// `text`'s bytes.
    b: &'a [u8],
    i: usize,
}

impl<'a> Scan<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// Skips whitespace and takes `c`.
    fn expect(&mut self, c: u8) -> Option<()> {
        self.ws();
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// Marks a field seen; a second one is serde_json's "duplicate field" error.
    fn once(&mut self, seen: &mut bool) -> Option<&mut Self> {
        (!std::mem::replace(seen, true)).then_some(self)
    }

    /// A string without escapes or control characters, borrowed.
    fn string(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let start = self.i;
        let len = string_end(&self.b[start..])?;
        self.i = start + len;
        if self.b[self.i] != b'"' {
            return None;
        }
        self.i += 1;
        // Quotes are ASCII, so both ends are character boundaries.
        self.text.get(start..start + len)
    }

    /// `null` as None, else `read`.
    fn nullable<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        self.ws();
        if self.b[self.i..].starts_with(b"null") {
            self.i += 4;
            return Some(None);
        }
        read(self).map(Some)
    }

    fn opt_str(&mut self) -> Option<Option<Cow<'a, str>>> {
        self.nullable(|s| s.string().map(Cow::Borrowed))
    }

    /// An object, each value read by `field` (which must consume it) after its key.
    fn object(&mut self, mut field: impl FnMut(&mut Self, &[u8]) -> Option<()>) -> Option<()> {
        self.expect(b'{')?;
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        loop {
            let key = self.string()?;
            self.expect(b':')?;
            field(self, key.as_bytes())?;
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// `choices`: null, or an array whose first element is the choice read.
    fn choices(&mut self, out: &mut First<WireChoice<'a>>) -> Option<()> {
        self.ws();
        if self.b[self.i..].starts_with(b"null") {
            self.i += 4;
            return Some(());
        }
        self.expect(b'[')?;
        self.ws();
        if self.peek()? == b']' {
            self.i += 1;
            return Some(());
        }
        let mut c = WireChoice::default();
        let mut seen = [false; 4];
        self.object(|s, key| match key {
            b"delta" => {
                s.once(&mut seen[0])?;
                c.delta = s.nullable(Scan::delta)?;
                Some(())
            }
            b"message" => {
                s.once(&mut seen[1])?;
                c.message = s.nullable(Scan::delta)?;
                Some(())
            }
            b"text" => {
                s.once(&mut seen[2])?;
                c.text = s.opt_str()?;
                Some(())
            }
            b"finish_reason" => {
                s.once(&mut seen[3])?;
                c.finish_reason = s.opt_str()?;
                Some(())
            }
            _ => s.skip(1),
        })?;
        out.0 = Some(c);
        loop {
            self.ws();
            match self.peek()? {
                b',' => {
                    self.i += 1;
                    self.skip(1)?;
                }
                b']' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn delta(&mut self) -> Option<WireDelta<'a>> {
        let mut d = WireDelta::default();
        let mut seen = [false; 3];
        self.object(|s, key| {
            let (slot, i) = match key {
                b"content" => (&mut d.content, 0),
                b"reasoning_content" => (&mut d.reasoning_content, 1),
                b"reasoning" => (&mut d.reasoning, 2),
                _ => return s.skip(2),
            };
            s.once(&mut seen[i])?;
            *slot = s.opt_str()?;
            Some(())
        })?;
        Some(d)
    }

    fn usage(&mut self) -> Option<WireUsage> {
        let mut u = WireUsage::default();
        let mut seen = [false; 2];
        self.object(|s, key| {
            let (slot, i) = match key {
                b"prompt_tokens" => (&mut u.prompt_tokens, 0),
                b"completion_tokens" => (&mut u.completion_tokens, 1),
                _ => return s.skip(1),
            };
            s.once(&mut seen[i])?;
            *slot = s.nullable(Scan::count)?;
            Some(())
        })?;
        Some(u)
    }

    /// A plain unsigned integer that fits u64 (a sign, fraction or exponent is left to serde_json).
    fn count(&mut self) -> Option<u64> {
        self.ws();
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        let digits = &self.b[start..self.i];
        if digits.is_empty() || (digits.len() > 1 && digits[0] == b'0') {
            return None;
        }
        if let Some(b'.' | b'e' | b'E') = self.peek() {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    }

    /// Skips any one JSON value, checking it as strictly as serde_json does.
    fn skip(&mut self, depth: u32) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.ws();
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' => self.object(|s, _| s.skip(depth + 1)),
            b'[' => {
                self.i += 1;
                self.ws();
                if self.peek()? == b']' {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.skip(depth + 1)?;
                    self.ws();
                    match self.peek()? {
                        b',' => self.i += 1,
                        b']' => {
                            self.i += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.b[self.i..]
            .starts_with(word)
            .then(|| self.i += word.len())
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        self.i - start
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        let first = self.peek()?;
        let n = self.digits();
        if n == 0 || (first == b'0' && n > 1) {
            return None;
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return None;
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(())
    }
}

/// Where the first `"`, `\\` or control character of `b` is: eight bytes at a time (SWAR), since
/// strings are most of a chunk's bytes.
fn string_end(b: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut at = 0;
    while let Some(word) = b.get(at..at + 8) {
        let w = u64::from_le_bytes(word.try_into().ok()?);
        // A byte's high bit is set where it is zero after the xor, or below 0x20; borrows only
        // ever mark bytes after the first true one, so the lowest mark is exact.
        let zero = |x: u64| x.wrapping_sub(ONES) & !x;
        let found = (zero(w ^ (ONES * b'"' as u64))
            | zero(w ^ (ONES * b'\\' as u64))
            | (w.wrapping_sub(ONES * 0x20) & !w))
            & HIGH;
        if found != 0 {
            return Some(at + found.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    b[at..]
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        .map(|p| at + p)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::*;

    /// What a decode kept, comparable.
    type Kept = (
        Option<(
            Option<[Option<String>; 3]>,
            Option<[Option<String>; 3]>,
            Option<String>,
            Option<String>,
        )>,
        Option<(Option<u64>, Option<u64>)>,
        bool,
    );

    fn kept(w: &WireOpenAi<'_>) -> Kept {
        let s = |c: &Option<Cow<'_, str>>| c.as_deref().map(str::to_owned);
        let d = |d: &Option<WireDelta<'_>>| {
            d.as_ref()
                .map(|d| [s(&d.content), s(&d.reasoning_content), s(&d.reasoning)])
        };
        (
            w.choices
                .0
                .as_ref()
                .map(|c| (d(&c.delta), d(&c.message), s(&c.text), s(&c.finish_reason))),
            w.usage
                .as_ref()
                .map(|u| (u.prompt_tokens, u.completion_tokens)),
            w.error.is_some(),
        )
    }

    /// The scanner agrees with serde_json whenever it answers.
    fn agrees(payload: &[u8]) -> bool {
        let fast = openai(payload);
        let slow = serde_json::from_slice::<WireOpenAi<'_>>(payload);
        match (&fast, &slow) {
            (Some(f), Ok(s)) => {
                assert_eq!(kept(f), kept(s), "{}", String::from_utf8_lossy(payload))
            }
            (Some(_), Err(e)) => panic!(
                "scanner accepted what serde_json refuses ({e}): {}",
                String::from_utf8_lossy(payload)
            ),
            (None, _) => {}
        }
        fast.is_some()
    }

    #[test]
    fn string_end_finds_the_first_special_byte_at_every_place() {
        for len in 0..20 {
            for special in [b'"', b'\\', 0, 0x1f] {
                for at in 0..=len {
                    // Bytes around the specials' values, and above 0x7f, must not be taken for them.
                    let mut b: Vec<u8> = (0..len)
                        .map(|i| [b'!', b'#', b' ', 0x5b, 0x5d, 0xc3, 0xff][i % 7])
                        .collect();
                    if at < len {
                        b[at] = special;
                        // A second one after it must not hide the first.
                        if at + 1 < len {
                            b[at + 1] = b'"';
                        }
                    }
                    let want = (at < len).then_some(at);
                    assert_eq!(string_end(&b), want, "{b:?}");
                }
            }
        }
    }

    #[test]
    fn reads_what_servers_send() {
        let usual: [&[u8]; 9] = [
            br#"{"id":"chatcmpl-fast","object":"chat.completion.chunk","created":1700000000,"model":"gt-model","choices":[{"index":0,"delta":{"role":"assistant","content":" hello"},"finish_reason":null}]}"#,
            br#"{"id":"x","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop","stop_reason":null}],"usage":null}"#,
            br#"{"id":"x","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":16,"total_tokens":32,"completion_tokens":16,"prompt_tokens_details":{"cached_tokens":0}}}"#,
            br#"{"choices":[{"text":" a","index":0,"logprobs":{"tokens":[" a"],"token_logprobs":[-0.25,1e-3,-2.5E+2]},"finish_reason":""}]}"#,
            br#"{"choices":[{"delta":{"reasoning_content":"why","content":null}},{"delta":{"content":"second"}}],"usage":{"completion_tokens":0,"prompt_tokens":null}}"#,
            br#"{"id":1E400,"x":[-0,0.5e+1,{}],"choices":[]}"#,
            b" {\"choices\" : [ { \"delta\" : { \"reasoning\" : \"\xc3\xa9t\xc3\xa9\" } } ] , \"created\":-0.5e-7 }\r\n",
            br#"{"choices":null,"usage":{"prompt_tokens":3,"completion_tokens":4}}"#,
            br#"{"t":true,"f":false,"e":[ ],"o":{},"choices":[{"delta":{},"logprobs":{"x":[true,false]}}]}"#,
        ];
        for p in usual {
            assert!(agrees(p), "not read: {}", String::from_utf8_lossy(p));
        }
        let w = openai(usual[0]).unwrap();
        let c = w.choices.0.unwrap();
        assert_eq!(c.delta.unwrap().content.as_deref(), Some(" hello"));
        assert_eq!(c.finish_reason, None);
        let w = openai(usual[2]).unwrap();
        assert!(w.choices.0.is_none());
        let u = w.usage.unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens), (Some(16), Some(16)));
    }

    #[test]
    fn leaves_the_unusual_to_serde_json() {
        let unusual: [&[u8]; 16] = [
            br#"{"choices":[{"delta":{"content":"a\nb"}}]}"#,
            br#"{"error":{"message":"overloaded"}}"#,
            br#"{"choices":[{"delta":{"content":"a"}}],"choices":[]}"#,
            br#"{"choices":[{"delta":{"content":"a","content":"b"}}]}"#,
            br#"{"choices":[null]}"#,
            br#"{"choices":{"delta":{}}}"#,
            br#"{"usage":{"completion_tokens":16.0}}"#,
            br#"{"usage":{"completion_tokens":-1}}"#,
            br#"{"usage":{"completion_tokens":018}}"#,
            br#"{"usage":{"completion_tokens":99999999999999999999}}"#,
            br#"{"choices":[{"delta":{"content":"a"}}]} x"#,
            br#"{"choices":[{"delta":{"content":"a"}}],}"#,
            br#"{"id":01}"#,
            br#"{"id":tru}"#,
            b"{\"id\":\"a\x01\"}",
            b"{\"choices\":[{\"delta\":{\"content\":\"\xff\"}}]}",
        ];
        for p in unusual {
            assert!(!agrees(p), "read: {}", String::from_utf8_lossy(p));
        }
        let deep = format!("{{\"x\":{}1{}}}", "[".repeat(40), "]".repeat(40));
        assert!(!agrees(deep.as_bytes()));
        // Nesting is read up to MAX_DEPTH levels below a field, arrays or objects alike.
        let arrays = |n: usize| format!("{{\"x\":{}1{}}}", "[".repeat(n), "]".repeat(n));
        let objects = |n: usize| format!("{{\"x\":{}1{}}}", "{\"k\":".repeat(n), "}".repeat(n));
        let max = MAX_DEPTH as usize;
        for nested in [&arrays as &dyn Fn(usize) -> String, &objects] {
            assert!(agrees(nested(max).as_bytes()), "{}", nested(max));
            assert!(!agrees(nested(max + 1).as_bytes()), "{}", nested(max + 1));
        }
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-1e9f64..1e9).prop_map(Value::from),
            "[ -~é\n\"\\\\]{0,8}".prop_map(Value::from),
        ]
    }

    fn any_value() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map("[a-z]{1,3}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// A value in a known field's place: mostly its usual type, sometimes anything.
    fn field(usual: BoxedStrategy<Value>) -> impl Strategy<Value = Value> {
        prop_oneof![4 => usual, 1 => any_value()]
    }

    fn text() -> BoxedStrategy<Value> {
        prop_oneof![Just(Value::Null), "[ -~é\n]{0,6}".prop_map(Value::from)].boxed()
    }

    fn chunk() -> impl Strategy<Value = Value> {
        let delta = prop::collection::btree_map(
            prop::sample::select(vec!["content", "reasoning_content", "reasoning", "role"]),
            field(text()),
            0..3,
        )
        .prop_map(|m| json!(m))
        .boxed();
        let choice = (
            prop::option::of(field(delta.clone())),
            prop::option::of(field(delta)),
            prop::option::of(field(text())),
            prop::option::of(field(text())),
            prop::option::of(any_value()),
        )
            .prop_map(|(d, m, t, f, other)| {
                let mut o = serde_json::Map::new();
                for (k, v) in [
                    ("delta", d),
                    ("message", m),
                    ("text", t),
                    ("finish_reason", f),
                    ("logprobs", other),
                ] {
                    if let Some(v) = v {
                        o.insert(k.into(), v);
                    }
                }
                Value::Object(o)
            });
        let usage = (
            prop::option::of(field(any::<u32>().prop_map(Value::from).boxed())),
            prop::option::of(field(any::<u32>().prop_map(Value::from).boxed())),
        )
            .prop_map(|(p, c)| json!({"prompt_tokens": p, "completion_tokens": c}));
        (
            prop::option::of(field(
                prop::collection::vec(choice, 0..3)
                    .prop_map(Value::from)
                    .boxed(),
            )),
            prop::option::of(field(usage.boxed())),
            prop::option::of(any_value()),
        )
            .prop_map(|(choices, usage, id)| {
                let mut o = serde_json::Map::new();
                for (k, v) in [("id", id), ("choices", choices), ("usage", usage)] {
                    if let Some(v) = v {
                        o.insert(k.into(), v);
                    }
                }
                Value::Object(o)
            })
    }

    #[test]
    fn the_generated_chunks_mostly_take_the_fast_path() {
        // Otherwise the agreement properties below would test little of the scanner.
        use proptest::strategy::ValueTree;
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let strategy = chunk();
        let read = (0..500)
            .filter(|_| {
                let v = strategy.new_tree(&mut runner).unwrap().current();
                agrees(&serde_json::to_vec(&v).unwrap())
            })
            .count();
        assert!(read >= 100, "only {read} of 500 read by the scanner");
    }

    proptest! {
        #[test]
        fn agrees_with_serde_json_on_chunks(v in chunk(), pretty in any::<bool>()) {
            let text = if pretty { serde_json::to_vec_pretty(&v) } else { serde_json::to_vec(&v) }.unwrap();
            agrees(&text);
        }

        #[test]
        fn agrees_with_serde_json_on_damaged_chunks(v in chunk(), cut in any::<prop::sample::Index>(), byte in any::<u8>(), at in any::<prop::sample::Index>()) {
            let mut text = serde_json::to_vec(&v).unwrap();
            let mut cut_text = text[..cut.index(text.len() + 1)].to_vec();
            agrees(&cut_text);
            let i = at.index(text.len());
            text[i] = byte;
            agrees(&text);
            cut_text.extend_from_slice(b"}");
            agrees(&cut_text);
        }
    }
}
