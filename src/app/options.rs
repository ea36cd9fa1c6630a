//! The command line's shared flags turned into the core's options: how to open a source
//! (remote flags -> [`OpenRequest`]) and how to play it (play flags -> [`PlayerOptions`], with
//! positions resolved against the source).

use color_eyre::eyre::Result;

use super::config::defaults;
use super::exit::UsageError;
use crate::cli::{PaceArg, PlayFlags, RemoteArgs};
use crate::player::pace::{MAX_SPEED, MIN_SPEED};
use crate::player::{Pace, PlayerOptions};
use crate::source::open::{OpenRequest, SourceMode, is_endpoint};
use crate::source::{Filter, Source, SourceInfo};
use crate::wire::{ConnectOptions, RetryPolicy};

/// How to reach an endpoint, from the remote flags.
pub fn connect_options(remote: &RemoteArgs) -> Result<ConnectOptions> {
    let ca_pem = match &remote.ca_file {
        Some(p) => Some(
            crate::archive::storage::read_regular(p)
                .map_err(|e| UsageError(format!("--ca-file {}: {e}", p.display())))?,
        ),
        None => None,
    };
    Ok(ConnectOptions {
        token: remote.token.clone(),
        tls: remote.tls || ca_pem.is_some(),
        ca_pem,
        domain: None,
    })
}

/// How to open `source`, from the remote flags and the rest of what a command was given. The
/// remote flags (`--ca-file` is read here) count only for an endpoint.
pub fn open_request(
    source: &str,
    remote: &RemoteArgs,
    mode: SourceMode,
    allow_truncated: bool,
    agents: &[String],
    follow: &crate::cli::FollowArgs,
    time_field: Option<&str>,
) -> Result<OpenRequest> {
    let time_field = time_field
        .map(crate::event::TimeField::parse)
        .transpose()
        .map_err(UsageError)?;
    let endpoint =
        is_endpoint(source) || matches!(mode, SourceMode::Statehouse | SourceMode::Replayscope);
    Ok(OpenRequest {
        mode,
        allow_truncated,
        time_field,
        markers: None,
        connect: if endpoint {
            connect_options(remote)?
        } else {
            ConnectOptions::default()
        },
        retry: RetryPolicy {
            max_attempts: remote.retries(),
            ..RetryPolicy::default()
        },
        agents: agents.to_vec(),
        follow: follow.follow,
        poll: follow.poll_policy(),
    })
}

/// `--speed X`, checked against the supported range.
pub fn check_speed(speed: f64) -> Result<f64> {
    if !(MIN_SPEED..=MAX_SPEED).contains(&speed) {
        return Err(UsageError(format!(
            "--speed {speed} is outside {MIN_SPEED} to {MAX_SPEED}"
        ))
        .into());
    }
    Ok(speed)
}

/// Player options from the shared play flags, positions resolved against the source.
pub fn player_options(flags: &PlayFlags, source: &dyn Source) -> Result<PlayerOptions> {
    let info = source.info();
    // --rate alone means rate pace; --speed alone means realtime.
    let pace_arg = flags.pace.unwrap_or(match (flags.rate, flags.speed) {
        (Some(_), _) => PaceArg::Rate,
        (None, Some(_)) => PaceArg::Realtime,
        (None, None) => PaceArg::Fast,
    });
    let pace = match pace_arg {
        PaceArg::Fast => Pace::Fast,
        PaceArg::Realtime => Pace::Realtime {
            speed: check_speed(flags.speed.unwrap_or(defaults::SPEED))?,
        },
        PaceArg::Rate => {
            let rate = flags.rate.unwrap_or(defaults::RATE);
            if !(rate.is_finite() && rate > 0.0) {
                return Err(UsageError(format!("--rate {rate} must be above 0")).into());
            }
            Pace::Rate {
                events_per_sec: rate,
            }
        }
    };
    let from = match &flags.from {
        Some(p) => source.resolve(p.clone(), false)?,
        None => None,
    };
    let until = match &flags.until {
        Some(p) => Some(resolve_until(source, p.clone(), "--until")?),
        None => None,
    };
    let agent = parse_agents(&flags.agent, info, source.may_gain_agents())?;
    if flags.follow.follow && !source.can_follow() {
        return Err(UsageError(format!(
            "{}: --follow needs a source that grows (a statehouse:// daemon, an archive file or directory being written, an s3:// prefix, a `serve --follow` endpoint); a JSON Lines file is read whole",
            info.name
        ))
        .into());
    }
    // Markers to pause at, as offsets (ascending).
    let mut pause_at = Vec::new();
    if flags.pause_at_markers {
        let markers = source.markers();
        if markers.is_empty() {
            return Err(UsageError(format!(
                "{}: --pause-at-markers: the source has no markers (add them with `replayscope \
                 mark` or M in the inspector, or name a file with --markers)",
                info.name
            ))
            .into());
        }
        pause_at = crate::source::marked::marker_offsets(source)?
            .into_iter()
            .map(|(o, _)| o)
            .collect();
        pause_at.sort_unstable();
        pause_at.dedup();
    }
    let loops = match flags.loop_passes {
        None => crate::player::Loops::Once,
        Some(0) => crate::player::Loops::Forever,
        Some(n) => crate::player::Loops::Times(n),
    };
    if loops != crate::player::Loops::Once && flags.follow.follow {
        return Err(
            UsageError("--loop replays a range; a followed source has no end".into()).into(),
        );
    }
    Ok(PlayerOptions {
        pause_at,
        loops,
        follow: flags.follow.follow,
        pace,
        max_gap: flags.max_gap.map(|d| d.0),
        tick: flags.tick.map_or(defaults::TICK, |d| d.0),
        from,
        until,
        filter: Filter {
            agent,
            key_prefix: flags.key_prefix.clone(),
            ..Filter::default()
        },
        ..PlayerOptions::default()
    })
}

/// The last offset at or before `pos`; a usage error naming `flag` when there is none.
pub fn resolve_until(source: &dyn Source, pos: crate::event::Position, flag: &str) -> Result<u64> {
    source.resolve(pos.clone(), true)?.ok_or_else(|| {
        UsageError(format!(
            "{}: {flag} {pos} is before the first event",
            source.info().name
        ))
        .into()
    })
}

/// `--agent NAMESPACE/AGENT_ID` given any number of times: no filter when the source holds only
/// those agents (a Statehouse endpoint opened for them) and cannot gain others
/// (`may_gain_agents`: a followed archive can), else one agent to keep.
pub fn parse_agents(
    flags: &[String],
    info: &SourceInfo,
    may_gain_agents: bool,
) -> Result<Option<(String, String)>> {
    match flags {
        [] => Ok(None),
        // A source of that one agent only (a Statehouse endpoint opened for it): no filter.
        [one]
            if !may_gain_agents
                && info.channels.len() == 1
                && one.split_once('/')
                    == Some((info.channels[0].0.as_str(), info.channels[0].1.as_str())) =>
        {
            Ok(None)
        }
        [one] => parse_agent(Some(one), info),
        several => {
            let all_given = info.channels.iter().all(|(n, i, _)| {
                several
                    .iter()
                    .any(|a| a.split_once('/') == Some((n.as_str(), i.as_str())))
            });
            // Every agent it holds, and it gains no others: no filter.
            if all_given && info.channels.len() == several.len() && !may_gain_agents {
                Ok(None)
            } else {
                Err(UsageError(format!(
                    "{}: --agent given {} times: an archive or replayscope endpoint plays one agent or all \
                     (several are for a statehouse:// endpoint, which cannot list its agents)",
                    info.name,
                    several.len()
                ))
                .into())
            }
        }
    }
}

/// `--agent NAMESPACE/AGENT_ID`, checked against what the source holds.
pub fn parse_agent(flag: Option<&str>, info: &SourceInfo) -> Result<Option<(String, String)>> {
    let Some(a) = flag else { return Ok(None) };
    let (ns, id) = a
        .split_once('/')
        .filter(|(n, i)| !n.is_empty() && !i.is_empty())
        .ok_or_else(|| UsageError(format!("--agent {a:?}: expected NAMESPACE/AGENT_ID")))?;
    if !info.channels.iter().any(|(n, i, _)| n == ns && i == id) {
        let known: Vec<String> = info
            .channels
            .iter()
            .map(|(n, i, _)| format!("{n}/{i}"))
            .collect();
        return Err(UsageError(format!(
            "{}: unknown agent {a}; it has {}",
            info.name,
            known.join(", ")
        ))
        .into());
    }
    Ok(Some((ns.to_string(), id.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holding(agents: &[(&str, &str)]) -> SourceInfo {
        SourceInfo {
            name: "s.mcap".into(),
            channels: agents
                .iter()
                .map(|(n, a)| (n.to_string(), a.to_string(), 1))
                .collect(),
            ..SourceInfo::default()
        }
    }

    /// The agent filter is dropped only where the source holds just those agents and cannot
    /// gain others (a followed archive can).
    #[test]
    fn an_agent_filter_stays_where_the_source_may_gain_agents() {
        let one = holding(&[("ns", "a")]);
        let flag = ["ns/a".to_string()];
        assert_eq!(parse_agents(&flag, &one, false).unwrap(), None);
        assert_eq!(
            parse_agents(&flag, &one, true).unwrap(),
            Some(("ns".to_string(), "a".to_string()))
        );
        let two = holding(&[("ns", "a"), ("ns", "b")]);
        let both = ["ns/a".to_string(), "ns/b".to_string()];
        assert_eq!(parse_agents(&both, &two, false).unwrap(), None);
        let err = parse_agents(&both, &two, true).unwrap_err().to_string();
        assert!(
            err.contains("s.mcap") && err.contains("--agent given 2 times"),
            "{err}"
        );
    }
}
