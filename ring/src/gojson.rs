//! Go's `encoding/json` decoding rules, for reading hashrings.json exactly as Thanos does, on
//! serde: object keys match field names exactly or else case-insensitively (Go's folding, in
//! which `ſ` is an `s` and the Kelvin sign a `k`); unknown keys are ignored; `null` leaves a
//! value as it was; a repeated key decodes again into the value already there (a struct keeps the
//! fields the second object does not name, a slice reuses its elements); an integer field takes
//! only integer literals.
//!
//! Each type decodes *into* an existing value ([`GoDecode`]), which is what gives the last three
//! rules; [`Into`] makes that a serde `DeserializeSeed`.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A value that JSON decodes into in place, as Go's decoder does.
pub(crate) trait GoDecode {
    fn decode<'de, D: Deserializer<'de>>(&mut self, d: D) -> Result<(), D::Error>;
}

/// Decodes into the borrowed value.
pub(crate) struct Into<'a, T>(pub &'a mut T);

impl<'de, T: GoDecode> DeserializeSeed<'de> for Into<'_, T> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.0.decode(d)
    }
}

/// A Go struct: its JSON field names and how each decodes.
pub(crate) trait GoStruct {
    /// The Go type's name, for error messages.
    const NAME: &'static str;
    /// JSON names, all lowercase ASCII.
    const FIELDS: &'static [&'static str];
    /// Decodes the value of field `FIELDS[index]` from `map` into place.
    fn decode_field<'de, A: MapAccess<'de>>(&mut self, index: usize, map: &mut A) -> Result<(), A::Error>;
}

/// Decodes a JSON object into the struct's fields, in place; `null` leaves it as it was.
pub(crate) fn decode_struct<'de, D: Deserializer<'de>, T: GoStruct>(target: &mut T, d: D) -> Result<(), D::Error> {
    struct V<'a, T>(&'a mut T);
    impl<'de, T: GoStruct> Visitor<'de> for V<'_, T> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "a JSON object ({})", T::NAME)
        }
        fn visit_unit<E: de::Error>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
            decode_fields(self.0, map)
        }
    }
    d.deserialize_any(V(target))
}

/// Decodes the entries of an object into the struct's fields.
pub(crate) fn decode_fields<'de, A: MapAccess<'de>, T: GoStruct>(target: &mut T, mut map: A) -> Result<(), A::Error> {
    while let Some(key) = map.next_key::<String>()? {
        match field_index(T::FIELDS, &key) {
            Some(index) => target.decode_field(index, &mut map)?,
            None => {
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    Ok(())
}

/// The field a key names: the exact name if there is one, else the one equal under Go's folding.
fn field_index(fields: &[&str], key: &str) -> Option<usize> {
    fields.iter().position(|f| *f == key).or_else(|| fields.iter().position(|f| folds_to(key, f)))
}

/// Whether `key` equals the lowercase ASCII `name` under Go's case folding (`bytes.EqualFold`).
/// Only two non-ASCII characters fold to ASCII letters: U+017F (ſ, to s) and U+212A (Kelvin
/// sign, to k).
fn folds_to(key: &str, name: &str) -> bool {
    let mut name = name.bytes();
    for c in key.chars() {
        let folded = match c {
            'ſ' => b's',
            '\u{212A}' => b'k',
            c if c.is_ascii() => c.to_ascii_lowercase() as u8,
            _ => return false,
        };
        if name.next() != Some(folded) {
            return false;
        }
    }
    name.next().is_none()
}

impl GoDecode for String {
    fn decode<'de, D: Deserializer<'de>>(&mut self, d: D) -> Result<(), D::Error> {
        struct V<'a>(&'a mut String);
        impl<'de> Visitor<'de> for V<'_> {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_unit<E: de::Error>(self) -> Result<(), E> {
                Ok(())
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
                v.clone_into(self.0);
                Ok(())
            }
        }
        d.deserialize_any(V(self))
    }
}

/// Go's `int`: an integer literal within 64 bits; `2.0` or `1e3` are refused, as Go refuses them.
impl GoDecode for i64 {
    fn decode<'de, D: Deserializer<'de>>(&mut self, d: D) -> Result<(), D::Error> {
        struct V<'a>(&'a mut i64);
        impl<'de> Visitor<'de> for V<'_> {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an integer")
            }
            fn visit_unit<E: de::Error>(self) -> Result<(), E> {
                Ok(())
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
                *self.0 = v;
                Ok(())
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
                *self.0 = i64::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))?;
                Ok(())
            }
            /// serde_json reads `-0` as a float; Go reads it as the integer 0. (`-0.0` comes here
            /// too and is taken as 0, where Go refuses it: the two cannot be told apart.)
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
                if v == 0.0 && v.is_sign_negative() {
                    *self.0 = 0;
                    return Ok(());
                }
                Err(E::invalid_type(de::Unexpected::Float(v), &self))
            }
        }
        d.deserialize_any(V(self))
    }
}

impl GoDecode for bool {
    fn decode<'de, D: Deserializer<'de>>(&mut self, d: D) -> Result<(), D::Error> {
        struct V<'a>(&'a mut bool);
        impl<'de> Visitor<'de> for V<'_> {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a boolean")
            }
            fn visit_unit<E: de::Error>(self) -> Result<(), E> {
                Ok(())
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
                *self.0 = v;
                Ok(())
            }
        }
        d.deserialize_any(V(self))
    }
}

/// A Go slice: `null` empties it; an array decodes element i into the existing element i (a new
/// one starts from the default) and cuts the slice to the array's length.
impl<T: GoDecode + Default> GoDecode for Vec<T> {
    fn decode<'de, D: Deserializer<'de>>(&mut self, d: D) -> Result<(), D::Error> {
        struct V<'a, T>(&'a mut Vec<T>);
        impl<'de, T: GoDecode + Default> Visitor<'de> for V<'_, T> {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array")
            }
            fn visit_unit<E: de::Error>(self) -> Result<(), E> {
                self.0.clear();
                Ok(())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
                let v = self.0;
                let mut i = 0;
                loop {
                    if i < v.len() {
                        if seq.next_element_seed(Into(&mut v[i]))?.is_none() {
                            break;
                        }
                    } else {
                        let mut element = T::default();
                        if seq.next_element_seed(Into(&mut element))?.is_none() {
                            break;
                        }
                        v.push(element);
                    }
                    i += 1;
                }
                v.truncate(i);
                Ok(())
            }
        }
        d.deserialize_any(V(self))
    }
}

/// Prometheus's `labels.Labels` JSON: an object of strings, decoded afresh each time (a `null`
/// value is the empty string; a repeated name keeps its last value); `null` is no labels.
impl GoDecode for BTreeMap<String, String> {
    fn decode<'de, D: Deserializer<'de>>(&mut self, d: D) -> Result<(), D::Error> {
        struct V<'a>(&'a mut BTreeMap<String, String>);
        impl<'de> Visitor<'de> for V<'_> {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of label names to values")
            }
            fn visit_unit<E: de::Error>(self) -> Result<(), E> {
                self.0.clear();
                Ok(())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
                let mut labels = BTreeMap::new();
                while let Some(name) = map.next_key::<String>()? {
                    let mut value = String::new();
                    map.next_value_seed(Into(&mut value))?;
                    labels.insert(name, value);
                }
                *self.0 = labels;
                Ok(())
            }
        }
        d.deserialize_any(V(self))
    }
}

/// The top level of hashrings.json: `null` (None, as Go's nil slice) or an array.
pub(crate) fn decode_top<'de, D: Deserializer<'de>, T: GoDecode + Default>(d: D) -> Result<Option<Vec<T>>, D::Error> {
    struct V<T>(PhantomData<T>);
    impl<'de, T: GoDecode + Default> Visitor<'de> for V<T> {
        type Value = Option<Vec<T>>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an array of hashrings")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut all = Vec::new();
            loop {
                let mut element = T::default();
                if seq.next_element_seed(Into(&mut element))?.is_none() {
                    return Ok(Some(all));
                }
                all.push(element);
            }
        }
    }
    d.deserialize_any(V(PhantomData))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_is_gos() {
        assert!(folds_to("Endpoints", "endpoints"));
        assert!(folds_to("ENDPOINTS", "endpoints"));
        assert!(folds_to("ſhard_ſize", "shard_size"));
        assert!(folds_to("\u{212A}", "k"));
        assert!(!folds_to("endpoint", "endpoints"));
        assert!(!folds_to("endpointss", "endpoints"));
        assert!(!folds_to("éndpoints", "endpoints"));
        assert_eq!(field_index(&["a_b", "ab"], "AB"), Some(1));
    }
}
