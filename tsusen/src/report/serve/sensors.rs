//! `/api/series/sensors?proto=TCP&port=5555`: one series' distinct sources
//! per sensor and shown day. Over ClickHouse it is asked in SQL at request
//! time (`uniqExact(src_ip)` per day and sensor, within `--sensor`); over a
//! directory of day files the whole series is its one sensor's (the
//! directory's name, or `--sensor`).

use std::sync::Arc;

use anyhow::{Context as _, Result, anyhow};
use axum::{
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::json;
use tsusen_common::{classify::has_ports, proto};

use super::{
    AppState,
    api::{error, json_body},
};
use crate::{
    dayfile::ProtoColumn,
    report::{
        aggregate::{ProtoPort, date},
        source::PerSensor,
    },
};

#[derive(Debug, Default, Deserialize)]
pub(super) struct SeriesQuery {
    proto: Option<String>,
    port: Option<String>,
}

impl SeriesQuery {
    /// The series named: a protocol (name or number) and, for protocols
    /// with ports, a port.
    fn service(&self) -> Result<ProtoPort> {
        let given = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let name = given(&self.proto)
            .ok_or_else(|| anyhow!("give proto= (a name like TCP or a number)"))?;
        let proto = proto::from_column(&name)
            .ok_or_else(|| anyhow!("bad proto {name:?}: expected a name like TCP or a number"))?;
        let port = match given(&self.port) {
            Some(v) if has_ports(proto) => v
                .parse::<u16>()
                .with_context(|| format!("bad port {v:?}: expected 0-65535"))?,
            Some(v) => return Err(anyhow!("bad port {v:?}: {name} has no ports")),
            None if has_ports(proto) => return Err(anyhow!("give port= (0-65535) for {name}")),
            None => 0,
        };
        Ok(ProtoPort { proto, port })
    }
}

pub(super) async fn series_sensors(
    State(state): State<Arc<AppState>>,
    Query(query): Query<SeriesQuery>,
) -> Response {
    let service = match query.service() {
        Ok(s) => s,
        Err(err) => return error(StatusCode::BAD_REQUEST, &format!("{err:#}")),
    };
    let snapshot = state.snapshot();
    let source = Arc::clone(&state.source);
    let answer = tokio::task::spawn_blocking(move || {
        let w = &snapshot.page.window;
        let days: Vec<u16> = w.days().collect();
        let sensors = if w.is_empty() {
            Vec::new()
        } else {
            match source.per_sensor(service, w.first_day..=w.last_day)? {
                PerSensor::One(name) => {
                    let counts = w
                        .series
                        .iter()
                        .find(|s| s.service == service)
                        .map_or_else(|| vec![0; days.len()], |s| s.counts.clone());
                    if counts.iter().all(|&n| n == 0) {
                        Vec::new()
                    } else {
                        vec![(name, counts)]
                    }
                }
                PerSensor::Many(many) => many,
            }
        };
        anyhow::Ok(json!({
            "label": service.to_string(),
            "proto": ProtoColumn(service.proto).to_string(),
            "port": service.port(),
            "days": days.iter().map(|&d| date(d)).collect::<Vec<_>>(),
            "sensors": sensors.iter().map(|(name, counts)| json!({
                "sensor": name,
                "counts": counts,
            })).collect::<Vec<_>>(),
        }))
    })
    .await;
    match answer {
        Ok(Ok(body)) => json_body(body.to_string()).into_response(),
        Ok(Err(err)) => error(StatusCode::BAD_GATEWAY, &format!("{err:#}")),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "query failed"),
    }
}
