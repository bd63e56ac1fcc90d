//! Calendar availability: the [`CalendarAvailability`] trait, its request and answer types, and the pure
//! computation that turns busy blocks into free slots of a requested duration inside business hours on a
//! local date, correct across daylight-saving changes.

use std::str::FromStr;

use async_trait::async_trait;
use chrono::{
    DateTime, Datelike, FixedOffset, LocalResult, NaiveDate, NaiveDateTime, TimeDelta, TimeZone,
    Utc,
};
use chrono_tz::Tz;
use serde::Serialize;

use crate::config::BusinessHours;
use byoc_credential_types::GoogleCalendarCredential;
use byoc_credential_types::InvalidField;

use crate::error::ProviderError;

/// Shortest slot that may be asked for, in minutes.
pub const MIN_SLOT_MINUTES: u32 = 5;
/// Longest slot that may be asked for, in minutes (a whole day).
pub const MAX_SLOT_MINUTES: u32 = 24 * 60;
/// Slots start on this grid, counted from the opening time, in minutes.
pub const SLOT_GRID_MINUTES: i64 = 15;

/// A request for free slots: a local date, a slot length and optionally the IANA time zone of the date
/// (default: the calendar's own time zone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AvailabilityRequest {
    date: NaiveDate,
    duration_minutes: u32,
    time_zone: Option<Tz>,
}

impl AvailabilityRequest {
    /// A request for `date`, slots of `duration_minutes` (5 to 1440), in `time_zone` when given.
    pub fn new(
        date: NaiveDate,
        duration_minutes: u32,
        time_zone: Option<Tz>,
    ) -> Result<Self, InvalidField> {
        if !(1970..=9999).contains(&date.year()) {
            return Err(InvalidField::new(
                "date",
                "must be in the years 1970 to 9999",
            ));
        }
        if !(MIN_SLOT_MINUTES..=MAX_SLOT_MINUTES).contains(&duration_minutes) {
            return Err(InvalidField::new(
                "duration",
                format!("must be between {MIN_SLOT_MINUTES} and {MAX_SLOT_MINUTES} minutes"),
            ));
        }
        Ok(AvailabilityRequest {
            date,
            duration_minutes,
            time_zone,
        })
    }

    /// Parses the query parameters `date` (`YYYY-MM-DD`), `duration` (minutes) and `timeZone` (IANA name).
    pub fn parse(
        date: &str,
        duration: &str,
        time_zone: Option<&str>,
    ) -> Result<Self, InvalidField> {
        let date = Some(date)
            .filter(|text| is_iso_date_shaped(text))
            .and_then(|text| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok())
            .ok_or_else(|| InvalidField::new("date", "must be a date in the form YYYY-MM-DD"))?;
        let duration = Some(duration)
            .filter(|text| !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()))
            .and_then(|text| text.parse::<u32>().ok())
            .ok_or_else(|| InvalidField::new("duration", "must be a whole number of minutes"))?;
        let time_zone = time_zone
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(|name| {
                Tz::from_str(name).map_err(|_| {
                    InvalidField::new(
                        "timeZone",
                        "must be an IANA time zone such as America/New_York",
                    )
                })
            })
            .transpose()?;
        Self::new(date, duration, time_zone)
    }

    /// The local date.
    pub fn date(&self) -> NaiveDate {
        self.date
    }

    /// The slot length in minutes.
    pub fn duration_minutes(&self) -> u32 {
        self.duration_minutes
    }

    /// The requested time zone, if any.
    pub fn time_zone(&self) -> Option<Tz> {
        self.time_zone
    }
}

/// A free slot, with the UTC offset in force at each end in the request's time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TimeSlot {
    /// Start (RFC 3339 with offset).
    pub start: DateTime<FixedOffset>,
    /// End (RFC 3339 with offset).
    pub end: DateTime<FixedOffset>,
}

/// A busy block reported by the calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusyInterval {
    /// Start of the block.
    pub start: DateTime<Utc>,
    /// End of the block.
    pub end: DateTime<Utc>,
}

/// Free slots for a date.
#[derive(Debug)]
pub struct Availability {
    /// The free slots, in order.
    pub slots: Vec<TimeSlot>,
    /// The time zone the date and the business hours were read in.
    pub time_zone: Tz,
    /// When Google rotated the refresh token while answering, the credential with the new token, for the
    /// caller to encrypt and store. `None` means keep the stored credential.
    pub updated_credential: Option<GoogleCalendarCredential>,
}

/// Free slots in a calendar.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait CalendarAvailability: Send + Sync {
    /// The free slots of `request.duration_minutes()` inside business hours on `request.date()`.
    async fn free_slots(
        &self,
        credential: &GoogleCalendarCredential,
        request: &AvailabilityRequest,
    ) -> Result<Availability, ProviderError>;
}

/// The instant a local wall-clock time names: the earlier one when the clock is turned back, and the end of
/// the gap when the time is skipped by a clock turned forward.
pub fn resolve_local(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(instant) => instant.with_timezone(&Utc),
        LocalResult::Ambiguous(earlier, _) => earlier.with_timezone(&Utc),
        LocalResult::None => (1..=24 * 60)
            .find_map(|minutes| {
                tz.from_local_datetime(&(local + TimeDelta::minutes(minutes)))
                    .earliest()
            })
            .map_or_else(|| local.and_utc(), |instant| instant.with_timezone(&Utc)),
    }
}

/// The business-hours window of `date` in `tz`, as instants.
pub fn business_window(
    date: NaiveDate,
    tz: Tz,
    hours: BusinessHours,
) -> (DateTime<Utc>, DateTime<Utc>) {
    (
        resolve_local(tz, date.and_time(hours.opens())),
        resolve_local(tz, date.and_time(hours.closes())),
    )
}

/// Free slots of `duration` inside business hours on `date` in `tz`, avoiding every `busy` block. Slots
/// are back to back inside each free stretch, each stretch starting on the 15-minute grid counted from the
/// opening time; slot ends are exclusive, so a meeting ending at 10:00 frees a slot at 10:00.
pub fn free_slots(
    date: NaiveDate,
    tz: Tz,
    hours: BusinessHours,
    duration: TimeDelta,
    busy: &[BusyInterval],
) -> Vec<TimeSlot> {
    let (open, close) = business_window(date, tz, hours);
    let mut blocks: Vec<BusyInterval> = busy
        .iter()
        .copied()
        .filter(|block| block.start < close && block.end > open && block.start < block.end)
        .collect();
    blocks.sort_by_key(|block| block.start);

    let mut slots = Vec::new();
    let mut cursor = open;
    for block in blocks {
        if block.start > cursor {
            push_slots(
                &mut slots,
                open,
                cursor,
                block.start.min(close),
                duration,
                tz,
            );
        }
        cursor = cursor.max(block.end);
        if cursor >= close {
            return slots;
        }
    }
    push_slots(&mut slots, open, cursor, close, duration, tz);
    slots
}

fn push_slots(
    slots: &mut Vec<TimeSlot>,
    open: DateTime<Utc>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    duration: TimeDelta,
    tz: Tz,
) {
    if duration <= TimeDelta::zero() {
        return;
    }
    let grid = SLOT_GRID_MINUTES * 60;
    let offset = (from - open).num_seconds().max(0);
    let steps = (offset + grid - 1) / grid;
    let mut start = open + TimeDelta::seconds(steps * grid);
    while start + duration <= to {
        let end = start + duration;
        slots.push(TimeSlot {
            start: start.with_timezone(&tz).fixed_offset(),
            end: end.with_timezone(&tz).fixed_offset(),
        });
        start = end;
    }
}

/// `YYYY-MM-DD` exactly: four, two and two ASCII digits joined by dashes (what the OpenAPI document states).
fn is_iso_date_shaped(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 10
        && bytes.iter().enumerate().all(|(index, byte)| match index {
            4 | 7 => *byte == b'-',
            _ => byte.is_ascii_digit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveTime;
    use chrono_tz::America::New_York;

    fn date(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").expect("valid date")
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("valid instant")
            .with_timezone(&Utc)
    }

    fn hours(opens: u32, closes: u32) -> BusinessHours {
        BusinessHours::new(
            NaiveTime::from_hms_opt(opens, 0, 0).expect("valid"),
            NaiveTime::from_hms_opt(closes, 0, 0).expect("valid"),
        )
        .expect("valid hours")
    }

    fn busy(start: &str, end: &str) -> BusyInterval {
        BusyInterval {
            start: utc(start),
            end: utc(end),
        }
    }

    /// The `minutes`-long free slots of `day` in New York's default business hours.
    fn new_york_slots(day: &str, minutes: i64, busy: &[BusyInterval]) -> Vec<TimeSlot> {
        free_slots(
            date(day),
            New_York,
            BusinessHours::default(),
            TimeDelta::minutes(minutes),
            busy,
        )
    }

    fn rendered(slots: &[TimeSlot]) -> Vec<String> {
        slots
            .iter()
            .map(|slot| format!("{}/{}", slot.start.to_rfc3339(), slot.end.to_rfc3339()))
            .collect()
    }

    #[test]
    fn an_empty_day_is_all_business_hours() {
        let slots = new_york_slots("2026-06-10", 60, &[]);
        assert_eq!(slots.len(), 8);
        assert_eq!(slots[0].start.to_rfc3339(), "2026-06-10T09:00:00-04:00");
        assert_eq!(slots[7].end.to_rfc3339(), "2026-06-10T17:00:00-04:00");
    }

    #[test]
    fn busy_blocks_are_avoided_and_free_stretches_start_on_the_grid() {
        let blocks = [
            busy("2026-06-10T14:00:00Z", "2026-06-10T14:50:00Z"),
            busy("2026-06-10T18:00:00Z", "2026-06-10T21:30:00Z"),
            busy("2026-06-10T20:00:00Z", "2026-06-10T20:30:00Z"),
        ];
        let slots = new_york_slots("2026-06-10", 30, &blocks);
        assert_eq!(
            rendered(&slots),
            vec![
                "2026-06-10T09:00:00-04:00/2026-06-10T09:30:00-04:00",
                "2026-06-10T09:30:00-04:00/2026-06-10T10:00:00-04:00",
                "2026-06-10T11:00:00-04:00/2026-06-10T11:30:00-04:00",
                "2026-06-10T11:30:00-04:00/2026-06-10T12:00:00-04:00",
                "2026-06-10T12:00:00-04:00/2026-06-10T12:30:00-04:00",
                "2026-06-10T12:30:00-04:00/2026-06-10T13:00:00-04:00",
                "2026-06-10T13:00:00-04:00/2026-06-10T13:30:00-04:00",
                "2026-06-10T13:30:00-04:00/2026-06-10T14:00:00-04:00",
            ]
        );
    }

    #[test]
    fn a_fully_busy_day_has_no_slots() {
        let whole_day = [busy("2026-06-10T00:00:00Z", "2026-06-11T00:00:00Z")];
        assert!(new_york_slots("2026-06-10", 15, &whole_day).is_empty());

        let back_to_back = [
            busy("2026-06-10T12:00:00Z", "2026-06-10T16:00:00Z"),
            busy("2026-06-10T16:00:00Z", "2026-06-10T21:00:00Z"),
            busy("2026-06-10T20:30:00Z", "2026-06-10T23:00:00Z"),
        ];
        assert!(new_york_slots("2026-06-10", 15, &back_to_back).is_empty());
    }

    #[test]
    fn a_slot_longer_than_any_free_stretch_yields_nothing() {
        let lunch = [busy("2026-06-10T16:00:00Z", "2026-06-10T17:00:00Z")];
        let slots = new_york_slots("2026-06-10", 4 * 60, &lunch);
        assert_eq!(
            rendered(&slots),
            vec!["2026-06-10T13:00:00-04:00/2026-06-10T17:00:00-04:00"]
        );
        assert!(new_york_slots("2026-06-10", 9 * 60, &[]).is_empty());
    }

    #[test]
    fn spring_forward_day_in_new_york() {
        let day = date("2026-03-08");
        let slots = new_york_slots("2026-03-08", 60, &[]);
        assert_eq!(slots.len(), 8);
        assert_eq!(slots[0].start.to_rfc3339(), "2026-03-08T09:00:00-04:00");

        // 00:00–06:00 local contains the skipped hour: five real hours.
        let night = free_slots(day, New_York, hours(0, 6), TimeDelta::minutes(60), &[]);
        assert_eq!(
            rendered(&night),
            vec![
                "2026-03-08T00:00:00-05:00/2026-03-08T01:00:00-05:00",
                "2026-03-08T01:00:00-05:00/2026-03-08T03:00:00-04:00",
                "2026-03-08T03:00:00-04:00/2026-03-08T04:00:00-04:00",
                "2026-03-08T04:00:00-04:00/2026-03-08T05:00:00-04:00",
                "2026-03-08T05:00:00-04:00/2026-03-08T06:00:00-04:00",
            ]
        );
    }

    #[test]
    fn fall_back_day_in_new_york() {
        let day = date("2026-11-01");
        let slots = new_york_slots("2026-11-01", 60, &[]);
        assert_eq!(slots.len(), 8);
        assert_eq!(slots[0].start.to_rfc3339(), "2026-11-01T09:00:00-05:00");

        // 00:00–06:00 local contains the repeated hour: seven real hours.
        let night = free_slots(day, New_York, hours(0, 6), TimeDelta::minutes(60), &[]);
        assert_eq!(night.len(), 7);
        assert_eq!(night[1].start.to_rfc3339(), "2026-11-01T01:00:00-04:00");
        assert_eq!(night[2].start.to_rfc3339(), "2026-11-01T01:00:00-05:00");
    }

    #[test]
    fn skipped_local_times_resolve_to_the_end_of_the_gap() {
        let skipped = date("2026-03-08").and_hms_opt(2, 30, 0).expect("valid");
        assert_eq!(
            resolve_local(New_York, skipped),
            utc("2026-03-08T07:00:00Z")
        );
        let repeated = date("2026-11-01").and_hms_opt(1, 30, 0).expect("valid");
        assert_eq!(
            resolve_local(New_York, repeated),
            utc("2026-11-01T05:30:00Z")
        );
    }

    #[test]
    fn request_parsing_names_the_bad_field() {
        let request = AvailabilityRequest::parse("2026-03-08", "30", Some("America/New_York"))
            .expect("valid");
        assert_eq!(request.time_zone(), Some(New_York));
        let refused = [
            ("03/08/2026", "30", None, "date"),
            ("+99999-01-01", "30", None, "date"),
            ("0001-01-01", "30", None, "date"),
            ("2026-03-08", "thirty", None, "duration"),
            ("2026-03-08", "2", None, "duration"),
            ("2026-03-08", "30", Some("Mars/Olympus"), "timeZone"),
        ];
        for (day, duration, time_zone, field) in refused {
            let error = AvailabilityRequest::parse(day, duration, time_zone).expect_err("refused");
            assert_eq!(error.field, field, "{day} {duration} {time_zone:?}");
        }
        assert_eq!(
            AvailabilityRequest::parse("2026-03-08", "30", Some(" "))
                .expect("blank tz")
                .time_zone(),
            None
        );
    }
}
