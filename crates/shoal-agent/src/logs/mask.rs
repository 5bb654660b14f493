//! Masking of secret values (a plan's passwords) in a task's output before it leaves the
//! host. A value split between two writes is still found: a tail that could be the start of
//! one is held back until the next write (or the end) tells.
#![forbid(unsafe_code)]

use shoal_proto::agent::MASK;

#[derive(Debug)]
pub struct Masker {
    /// Longest first, so that of two overlapping values the longer is masked.
    secrets: Vec<Vec<u8>>,
    /// Output not yet released: a strict prefix of some secret.
    held: Vec<u8>,
}

impl Masker {
    /// `None` when there is nothing to mask.
    pub fn new(secrets: &[String]) -> Option<Masker> {
        let mut secrets: Vec<Vec<u8>> = secrets.iter().filter(|s| !s.is_empty()).map(|s| s.as_bytes().to_vec()).collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        (!secrets.is_empty()).then_some(Masker { secrets, held: Vec::new() })
    }

    /// The output of `data` that can be released now, masked.
    pub fn push(&mut self, data: &[u8]) -> Vec<u8> {
        let mut buf = std::mem::take(&mut self.held);
        buf.extend_from_slice(data);
        self.scan(&buf, false)
    }

    /// At the end of the output: what was held back, masked (it may still hold a shorter
    /// secret).
    pub fn finish(&mut self) -> Vec<u8> {
        let held = std::mem::take(&mut self.held);
        self.scan(&held, true)
    }

    fn scan(&mut self, buf: &[u8], at_end: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(buf.len());
        let mut i = 0;
        while i < buf.len() {
            let rest = &buf[i..];
            if let Some(s) = self.secrets.iter().find(|s| rest.starts_with(s)) {
                out.extend_from_slice(MASK.as_bytes());
                i += s.len();
            } else if !at_end && self.secrets.iter().any(|s| s.len() > rest.len() && s.starts_with(rest)) {
                self.held = rest.to_vec();
                break;
            } else {
                out.push(buf[i]);
                i += 1;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(secrets: &[&str], writes: &[&str]) -> String {
        let mut m = Masker::new(&secrets.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let mut out = Vec::new();
        for w in writes {
            out.extend(m.push(w.as_bytes()));
        }
        out.extend(m.finish());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn whole_and_split_values_are_masked() {
        assert_eq!(run(&["hunter2"], &["pw=hunter2\n"]), "pw=******\n");
        assert_eq!(run(&["hunter2"], &["pw=hun", "ter2 and hunter2"]), "pw=****** and ******");
        assert_eq!(run(&["hunter2"], &["h", "u", "n", "t", "e", "r", "2", "!"]), "******!");
    }

    #[test]
    fn near_misses_are_released_unchanged() {
        assert_eq!(run(&["hunter2"], &["hunt", "ing"]), "hunting");
        assert_eq!(run(&["hunter2"], &["ends with hunte"]), "ends with hunte", "a held prefix comes out at the end");
        assert_eq!(run(&["aab"], &["aaab"]), "a******", "a failed start is retried one byte on");
    }

    #[test]
    fn the_longer_of_overlapping_values_wins() {
        assert_eq!(run(&["pass", "password1"], &["password1 pass"]), "****** ******");
        // A held start of the longer one still has the shorter one masked at the end.
        assert_eq!(run(&["hunter2", "ter"], &["a hunter"]), "a hun******");
    }

    #[test]
    fn nothing_to_mask_is_no_masker() {
        assert!(Masker::new(&[]).is_none());
        assert!(Masker::new(&[String::new()]).is_none());
    }
}
