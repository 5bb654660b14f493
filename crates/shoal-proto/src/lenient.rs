//! Lenient field decoders. GET query strings carry every value as text, and Python clients
//! write booleans as `True`; JSON bodies sometimes carry ids as strings. These helpers accept
//! all of those and reject anything else with the field's name in the error.

use serde::de::{self, Deserializer};
use serde::Deserialize;
use serde_json::Value;

fn int_of(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        Value::Bool(b) => Some(*b as i64),
        _ => None,
    }
}

/// `Option<i64>` from a number or a numeric string; `null` and `""` are absent.
pub fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let v = Option::<Value>::deserialize(d)?;
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(v) => int_of(&v).map(Some).ok_or_else(|| de::Error::custom(format!("expected an integer, got {v}"))),
    }
}

/// `Option<i32>`, as [`opt_i64`].
pub fn opt_i32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i32>, D::Error> {
    let v = opt_i64(d)?;
    v.map(|v| i32::try_from(v).map_err(|_| de::Error::custom("integer out of range"))).transpose()
}

/// `Option<bool>` from `true`/`True`/`1`/`"yes"` and their opposites.
pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    let v = Option::<Value>::deserialize(d)?;
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(Value::Number(n)) => Ok(Some(n.as_f64().unwrap_or(0.0) != 0.0)),
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Some(true)),
            "false" | "0" | "no" | "off" => Ok(Some(false)),
            "" => Ok(None),
            other => Err(de::Error::custom(format!("expected a boolean, got {other:?}"))),
        },
        Some(v) => Err(de::Error::custom(format!("expected a boolean, got {v}"))),
    }
}

/// `Option<String>` from a string or a number (scope ids arrive both ways).
pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = Option::<Value>::deserialize(d)?;
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(Value::Bool(b)) => Ok(Some(b.to_string())),
        Some(v) => Err(de::Error::custom(format!("expected a string, got {v}"))),
    }
}

/// A list of integers; each element may be a number or a numeric string. A query string
/// may also carry the list as `1,2,3`.
pub fn opt_i64_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<i64>>, D::Error> {
    let v = Option::<Value>::deserialize(d)?;
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| int_of(i).ok_or_else(|| de::Error::custom(format!("expected an integer, got {i}"))))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(Value::String(s)) => s
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|p| p.trim().parse::<i64>().map_err(|_| de::Error::custom(format!("expected an integer, got {p:?}"))))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(v) => int_of(&v).map(|i| Some(vec![i])).ok_or_else(|| de::Error::custom(format!("expected a list of integers, got {v}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct T {
        #[serde(default, deserialize_with = "opt_bool")]
        b: Option<bool>,
        #[serde(default, deserialize_with = "opt_i64")]
        n: Option<i64>,
        #[serde(default, deserialize_with = "opt_string")]
        s: Option<String>,
    }

    #[test]
    fn python_booleans_and_string_numbers() {
        for (raw, want) in [("\"True\"", true), ("\"true\"", true), ("\"1\"", true), ("true", true), ("\"False\"", false), ("0", false)] {
            let t: T = serde_json::from_str(&format!("{{\"b\":{raw}}}")).unwrap();
            assert_eq!(t.b, Some(want), "{raw}");
        }
        let t: T = serde_json::from_str(r#"{"n":"42","s":7}"#).unwrap();
        assert_eq!(t.n, Some(42));
        assert_eq!(t.s.as_deref(), Some("7"));
        assert!(serde_json::from_str::<T>(r#"{"n":"x"}"#).is_err());
        assert!(serde_json::from_str::<T>(r#"{"b":"maybe"}"#).is_err());
    }
}
