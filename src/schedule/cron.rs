//! `--cron "EXPR"`: standard five-field cron expressions (minute hour day-of-month month
//! day-of-week), evaluated in UTC. Fields take `*`, numbers, ranges `a-b`, steps `*/n` and
//! `a-b/n`, lists `a,b`; months and days also by name (`jan`, `mon`); day-of-week 0 and 7 are
//! Sunday. As in Vixie cron, when both day fields are restricted a day matching either runs.
//! `@hourly`, `@daily` (`@midnight`), `@weekly`, `@monthly`, `@yearly` (`@annually`) are
//! accepted.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Timelike, Utc};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    text: String,
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    days_restricted: bool,
    weekdays_restricted: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn field(text: &str, what: &str, min: u32, max: u32, names: &[&str]) -> Result<u64, String> {
    let value = |s: &str| -> Result<u32, String> {
        let lower = s.to_ascii_lowercase();
        if let Some(i) = names.iter().position(|n| *n == lower) {
            // Month names count from 1, weekday names from 0.
            return Ok(if names.len() == 12 {
                i as u32 + 1
            } else {
                i as u32
            });
        }
        s.parse::<u32>()
            .map_err(|_| format!("{what} {s:?} is not a number"))
    };
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .ok()
                    .filter(|n| *n > 0 && *n <= max - min + 1)
                    .ok_or_else(|| {
                        format!(
                            "{what} step {s:?} must be a number from 1 to {}",
                            max - min + 1
                        )
                    })?;
                (r, step)
            }
            None => (part, 1),
        };
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let v = value(range)?;
            (v, if step > 1 { max } else { v })
        };
        if lo < min || hi > max || lo > hi {
            return Err(format!(
                "{what} {range:?} is outside {min}-{max} (or the range is backwards)"
            ));
        }
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

impl std::str::FromStr for Cron {
    type Err = String;

    fn from_str(s: &str) -> Result<Cron, String> {
        let text = s.trim();
        let expanded = match text {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@yearly" | "@annually" => "0 0 1 1 *",
            other => other,
        };
        let parts: Vec<&str> = expanded.split_whitespace().collect();
        let [m, h, dom, mon, dow] = parts[..] else {
            return Err(format!(
                "cron expression {text:?}: expected 5 fields (minute hour day-of-month month \
                 day-of-week), got {}",
                parts.len()
            ));
        };
        let wrap = |e: String| format!("cron expression {text:?}: {e}");
        let mut weekdays = field(dow, "day-of-week", 0, 7, &WEEKDAYS).map_err(wrap)?;
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays | 1) & 0x7f;
        }
        Ok(Cron {
            text: text.to_string(),
            minutes: field(m, "minute", 0, 59, &[]).map_err(wrap)?,
            hours: field(h, "hour", 0, 23, &[]).map_err(wrap)? as u32,
            days: field(dom, "day-of-month", 1, 31, &[]).map_err(wrap)? as u32,
            months: field(mon, "month", 1, 12, &MONTHS).map_err(wrap)? as u16,
            weekdays: weekdays as u8,
            days_restricted: dom != "*",
            weekdays_restricted: dow != "*",
        })
    }
}

impl std::fmt::Display for Cron {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl Cron {
    fn day_matches(&self, d: NaiveDate) -> bool {
        let dom = self.days & (1 << d.day()) != 0;
        let dow = self.weekdays & (1 << d.weekday().num_days_from_sunday()) != 0;
        match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => dom || dow,
            (true, false) => dom,
            (false, true) => dow,
            (false, false) => true,
        }
    }

    /// The first time strictly after `t` that the expression matches (None if it never does
    /// within eight years, e.g. `0 0 31 2 *`).
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut day = t.date_naive();
        // The first whole minute after t.
        let start = t.with_second(0)?.with_nanosecond(0)? + Duration::minutes(1);
        let mut from_minute = if start.date_naive() == day {
            start.hour() * 60 + start.minute()
        } else {
            day = start.date_naive();
            0
        };
        let last = day + Duration::days(366 * 8);
        while day <= last {
            if self.months & (1 << day.month()) != 0 && self.day_matches(day) {
                for minute_of_day in from_minute..24 * 60 {
                    let (h, m) = (minute_of_day / 60, minute_of_day % 60);
                    if self.hours & (1 << h) != 0 && self.minutes & (1 << m) != 0 {
                        let time = NaiveTime::from_hms_opt(h, m, 0)?;
                        return Some(Utc.from_utc_datetime(&day.and_time(time)));
                    }
                }
            }
            day = day.succ_opt()?;
            from_minute = 0;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn next(expr: &str, t: &str) -> String {
        expr.parse::<Cron>()
            .unwrap()
            .next_after(at(t))
            .unwrap()
            .to_rfc3339()
    }

    #[test]
    fn next_times() {
        assert_eq!(
            next("* * * * *", "2026-11-23T17:00:30Z"),
            "2026-11-23T17:01:00+00:00"
        );
        assert_eq!(
            next("*/15 * * * *", "2026-11-23T17:00:00Z"),
            "2026-11-23T17:15:00+00:00"
        );
        assert_eq!(
            next("0 3 * * *", "2026-11-23T17:00:00Z"),
            "2026-11-24T03:00:00+00:00"
        );
        assert_eq!(
            next("30 9 * * mon-fri", "2026-11-27T10:00:00Z"),
            "2026-11-30T09:30:00+00:00"
        );
        assert_eq!(
            next("0 0 1 jan *", "2026-11-23T17:00:00Z"),
            "2027-01-01T00:00:00+00:00"
        );
        assert_eq!(
            next("@monthly", "2026-11-23T17:00:00Z"),
            "2026-12-01T00:00:00+00:00"
        );
        // Day-of-month OR day-of-week when both are given (Vixie cron).
        assert_eq!(
            next("0 0 13 * 5", "2026-11-23T00:00:00Z"),
            "2026-11-27T00:00:00+00:00"
        );
        // 7 is Sunday too.
        assert_eq!(
            next("0 12 * * 7", "2026-11-23T00:00:00Z"),
            "2026-11-29T12:00:00+00:00"
        );
        assert_eq!(
            next("5-10/5 1 * * *", "2026-11-23T01:05:00Z"),
            "2026-11-23T01:10:00+00:00"
        );
        assert_eq!(
            next("59 23 31 12 *", "2026-12-31T23:59:00Z"),
            "2027-12-31T23:59:00+00:00"
        );
        assert_eq!(
            next("0 0 29 2 *", "2026-03-01T00:00:00Z"),
            "2028-02-29T00:00:00+00:00"
        );
    }

    #[test]
    fn impossible_dates_never_match() {
        let c: Cron = "0 0 31 2 *".parse().unwrap();
        assert_eq!(c.next_after(at("2026-01-01T00:00:00Z")), None);
    }

    #[test]
    fn bad_expressions_say_what_is_wrong() {
        for (expr, says) in [
            ("* * * *", "expected 5 fields"),
            ("60 * * * *", "minute"),
            ("* 24 * * *", "hour"),
            ("* * 0 * *", "day-of-month"),
            ("* * * 13 *", "month"),
            ("* * * * 8", "day-of-week"),
            ("*/0 * * * *", "step"),
            ("*/61 * * * *", "step \"61\" must be a number from 1 to 60"),
            ("x * * * *", "not a number"),
            ("5-1 * * * *", "backwards"),
        ] {
            let e = expr.parse::<Cron>().unwrap_err();
            assert!(e.contains(says) && e.contains(expr), "{expr}: {e}");
        }
    }
}
