//! The kernel's CPU list syntax (`0-3,8,10-11`), as in `/sys/devices/system/cpu/online`, NUMA
//! nodes' `cpulist` and systemd's `CPUAffinity=`.

/// The CPUs a list names, ascending, without repeats.
pub fn parse(text: &str) -> Result<Vec<u32>, String> {
    let mut out = Vec::new();
    for part in text.trim().split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (number(a)?, number(b)?),
            None => (number(part)?, number(part)?),
        };
        if lo > hi || hi - lo > 65_535 {
            return Err(format!("cpu list {text:?}: bad range {part:?}"));
        }
        out.extend(lo..=hi);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

fn number(s: &str) -> Result<u32, String> {
    s.trim().parse().map_err(|_| format!("cpu list: {s:?} is not a number"))
}

/// The list in the kernel's short form: runs as ranges.
pub fn format(cpus: &[u32]) -> String {
    let mut sorted = cpus.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        parts.push(if start == end { start.to_string() } else { format!("{start}-{end}") });
        i += 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn lists_parse_and_print_back_in_short_form() {
        assert_eq!(parse("0-3,8,10-11\n").unwrap(), vec![0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(parse("").unwrap(), Vec::<u32>::new());
        assert_eq!(parse("3,1,2,2").unwrap(), vec![1, 2, 3]);
        assert_eq!(format(&[0, 1, 2, 3, 8, 10, 11]), "0-3,8,10-11");
        assert_eq!(format(&[5]), "5");
        assert!(parse("4-2").is_err());
        assert!(parse("a").is_err());
        assert!(parse("0-99999999").is_err(), "a range that would allocate without bound");
    }
}
