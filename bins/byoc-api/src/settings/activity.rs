//! The settings page's activity card: its filters (action, person, dates) and pages, read from the page's query
//! string. A filter that does not parse is said on the card, and the card shows the unfiltered activity.

use byoc_credential_store::{Actor, AuditAction, AuditEventId, AuditFilter};
use chrono::{NaiveDate, TimeDelta};
use serde::Deserialize;

/// How many events a page of the card shows.
pub const EVENTS_PER_PAGE: u32 = 20;

/// The card's part of the page's query string.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ActivityQuery {
    /// Only this action (`created`, `read`, `verified`, …).
    pub action: Option<String>,
    /// Only this person or service (`user:<uuid>`, `service:<name>`).
    pub actor: Option<String>,
    /// Only from this day on (`YYYY-MM-DD`, UTC).
    pub from: Option<String>,
    /// Only up to and including this day (`YYYY-MM-DD`, UTC).
    pub to: Option<String>,
    /// Only events older than this one (the page after the one that ended with it).
    pub before: Option<String>,
}

/// What the card shows: the filter and page it asked for, or why they were refused.
#[derive(Clone, Debug, Default)]
pub struct Activity {
    /// The filters as typed, to fill the form again (empty ones left out).
    pub query: ActivityQuery,
    /// The parsed filter (empty when a filter was refused).
    pub filter: AuditFilter,
    /// The page's cursor.
    pub before: Option<AuditEventId>,
    /// Why a filter was refused, as a sentence.
    pub error: Option<String>,
}

impl Activity {
    /// Parses the card's query; a value that does not parse is said and nothing is filtered.
    pub fn from_query(query: ActivityQuery) -> Activity {
        let query = ActivityQuery {
            action: non_empty(query.action),
            actor: non_empty(query.actor),
            from: non_empty(query.from),
            to: non_empty(query.to),
            before: non_empty(query.before),
        };
        match parse(&query) {
            Ok((filter, before)) => Activity {
                query,
                filter,
                before,
                error: None,
            },
            Err(error) => Activity {
                query,
                error: Some(error),
                ..Activity::default()
            },
        }
    }

    /// The settings page's URL with the same filters: the newest events (`before` `None`), or those older than
    /// `before`.
    pub fn page_url(&self, before: Option<i64>) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in [
            ("action", &self.query.action),
            ("actor", &self.query.actor),
            ("from", &self.query.from),
            ("to", &self.query.to),
        ] {
            if let Some(value) = value {
                query.append_pair(name, value);
            }
        }
        if let Some(before) = before {
            query.append_pair("before", &before.to_string());
        }
        let query = query.finish();
        if query.is_empty() {
            super::SETTINGS_PATH.to_owned()
        } else {
            format!("{}?{query}", super::SETTINGS_PATH)
        }
    }

    /// Whether any filter is set.
    pub fn is_filtered(&self) -> bool {
        self.filter != AuditFilter::default()
    }
}

fn non_empty(value: Option<String>) -> Option<String> {
    value
        .map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty())
}

fn parse(query: &ActivityQuery) -> Result<(AuditFilter, Option<AuditEventId>), String> {
    let day = |name: &str, text: &Option<String>| {
        text.as_deref()
            .map(|text| {
                NaiveDate::parse_from_str(text, "%Y-%m-%d")
                    .map_err(|_| format!("The {name} date must be a day as YYYY-MM-DD."))
            })
            .transpose()
    };
    let from = day("from", &query.from)?;
    let to = day("to", &query.to)?;
    let start_of = |day: NaiveDate| day.and_hms_opt(0, 0, 0).map(|time| time.and_utc());
    let filter = AuditFilter {
        action: query
            .action
            .as_deref()
            .map(AuditAction::parse)
            .transpose()
            .map_err(|_| {
                "The action must be an action name such as created, read or verified.".to_owned()
            })?,
        actor: query
            .actor
            .as_deref()
            .map(str::parse::<Actor>)
            .transpose()
            .map_err(|_| "The person must be one of the organization's members.".to_owned())?,
        credential_id: None,
        from: from.and_then(start_of),
        to: to
            .and_then(|day| day.checked_add_signed(TimeDelta::days(1)))
            .and_then(start_of),
    };
    if let (Some(from), Some(to)) = (filter.from, filter.to) {
        if from >= to {
            return Err("The from date must not be after the to date.".to_owned());
        }
    }
    let before = query
        .before
        .as_deref()
        .map(|text| {
            text.parse::<i64>()
                .ok()
                .filter(|id| *id > 0)
                .map(AuditEventId)
                .ok_or_else(|| "The page asked for does not exist.".to_owned())
        })
        .transpose()?;
    Ok((filter, before))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn activity(pairs: &[(&str, &str)]) -> Activity {
        let text = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        Activity::from_query(
            actix_web::web::Query::<ActivityQuery>::from_query(&text)
                .unwrap()
                .into_inner(),
        )
    }

    #[test]
    fn days_are_whole_utc_days_and_pages_keep_the_filters() {
        let parsed = activity(&[
            ("action", "read:sms:hot_lead"),
            ("from", "2026-12-01"),
            ("to", "2026-12-01"),
            ("actor", ""),
        ]);
        assert_eq!(parsed.error, None);
        assert_eq!(
            parsed.filter.from.unwrap().to_rfc3339(),
            "2026-12-01T00:00:00+00:00"
        );
        assert_eq!(
            parsed.filter.to.unwrap().to_rfc3339(),
            "2026-12-02T00:00:00+00:00"
        );
        assert!(parsed.query.actor.is_none() && parsed.is_filtered());
        assert_eq!(
            parsed.page_url(Some(42)),
            "/dashboard/settings?action=read%3Asms%3Ahot_lead&from=2026-12-01&to=2026-12-01&before=42"
        );
        assert_eq!(Activity::default().page_url(None), "/dashboard/settings");
    }

    #[test]
    fn a_filter_that_does_not_parse_is_said_and_nothing_is_filtered() {
        for pairs in [
            &[("from", "yesterday")][..],
            &[("to", "2026-13-01")],
            &[("action", "Read")],
            &[("actor", "bob")],
            &[("before", "0")],
            &[("before", "x")],
            &[("from", "2026-12-02"), ("to", "2026-12-01")],
        ] {
            let parsed = activity(pairs);
            assert!(parsed.error.is_some(), "{pairs:?}");
            assert!(
                !parsed.is_filtered() && parsed.before.is_none(),
                "{pairs:?}"
            );
        }
    }
}
