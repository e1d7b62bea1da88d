//! `zeek-mgmt-client --controller`: each command as zeek-client sends it,
//! and its answer printed as zeek-client prints it.

use std::process::ExitCode;

use zeek_mgmt_agent::client::{self, controller, ClientOptions};

use super::{emit, printed, usage_error, Command};

/// The commands with a controller, as zeek-client runs them.
pub(super) async fn with_controller(
    addr: &str,
    command: Command,
    opts: &ClientOptions,
    pretty: bool,
) -> ExitCode {
    use zeek_mgmt_agent::broker::records;
    use zeek_mgmt_agent::broker::Value;
    let set = |names: Vec<String>| Value::Set(names.iter().map(Value::string).collect());
    // The cluster file is read before anything is dialled.
    let staged = match &command {
        Command::StageConfig { file }
        | Command::DeployConfig { file }
        | Command::Check { file } => {
            // Read and checked as zeek-client does, with its words; a
            // ZeekControl node.cfg as ZeekControl reads it.
            let read = if client::nodecfg::is_node_cfg(file) {
                client::nodecfg::read(file, &Default::default())
                    .map(|c| c.file)
                    .map_err(|e| controller::Printed::error(&e.to_string()))
            } else {
                controller::cluster_file::read(file).map_err(|r| r.printed())
            };
            match read.and_then(|f| {
                controller::staged_configuration(&f).map_err(|e| controller::Printed::error(&e))
            }) {
                Ok(c) => Some(c),
                Err(p) => return emit(&p),
            }
        }
        Command::Welcome | Command::Standby => {
            return usage_error("welcome and standby talk to agents: drop --controller");
        }
        Command::Deploy { file: Some(_), .. } => {
            return usage_error("with a controller, deploy takes no file: use deploy-config FILE");
        }
        Command::Deploy {
            zeromq_xpub_port,
            zeromq_xsub_port,
            ..
        } if zeromq_xpub_port.is_some() || zeromq_xsub_port.is_some() => {
            return usage_error(
                "with a controller, the ZeroMQ broker's ports are the controller's: zeek-mgmt-controller --zeromq-xpub-port/--zeromq-xsub-port",
            );
        }
        _ => None,
    };
    let mut s = match controller::Session::connect(addr, opts.tls.clone(), opts.timeout).await {
        Ok(s) => s,
        Err(e) => return emit(&controller::Printed::error(&e)),
    };
    let printed = async {
        Ok::<_, String>(match command {
            Command::GetInstances => {
                controller::get_instances(&s.ask("get_instances", vec![]).await?)
            }
            Command::GetNodes { .. } => controller::get_nodes(&s.ask("get_nodes", vec![]).await?),
            Command::Netstats { nodes, table } => {
                let named = !nodes.is_empty();
                let args = s.ask("get_net_stats", vec![set(nodes)]).await?;
                let outcome = client::netstats::from_controller(&args, named);
                printed(&outcome, table.then_some(client::netstats::table))
            }
            Command::Crashes { nodes, table } => {
                let named = !nodes.is_empty();
                let args = s.ask("get_crashes", vec![set(nodes)]).await?;
                let outcome = client::crashes::from_controller(&args, named);
                printed(&outcome, table.then_some(client::crashes::table))
            }
            Command::StageConfig { .. } | Command::DeployConfig { .. } => {
                let Some(config) = &staged else {
                    return Ok(controller::Printed::error("no configuration"));
                };
                let stage = controller::stage(
                    &s.ask("stage_configuration", vec![records::configuration(config)])
                        .await?,
                );
                if matches!(command, Command::StageConfig { .. }) || stage.code != 0 {
                    stage
                } else {
                    controller::deploy(&s.ask("deploy", vec![]).await?)
                }
            }
            Command::Deploy { .. } => controller::deploy(&s.ask("deploy", vec![]).await?),
            Command::Check { .. } => {
                let Some(config) = &staged else {
                    return Ok(controller::Printed::error("no configuration"));
                };
                controller::check(
                    &s.ask("check_configuration", vec![records::configuration(config)])
                        .await?,
                )
            }
            Command::GetConfig {
                deployed,
                as_json,
                file,
                ..
            } => {
                let answer = s
                    .ask("get_configuration", vec![Value::Boolean(deployed)])
                    .await?;
                match controller::get_config(&answer, as_json) {
                    Err(p) => p,
                    Ok(text) => match file {
                        None => controller::Printed {
                            stdout: text,
                            ..Default::default()
                        },
                        Some(path) => match std::fs::write(&path, text) {
                            Ok(()) => controller::Printed::default(),
                            Err(e) => controller::Printed::error(&format!(
                                "cannot write {}: {e}",
                                path.display()
                            )),
                        },
                    },
                }
            }
            Command::GetIdValue { id, nodes } => controller::get_id_value(
                &s.ask("get_id_value", vec![Value::string(id), set(nodes)])
                    .await?,
            ),
            Command::Restart { nodes } => {
                controller::restart(&s.ask("restart", vec![set(nodes)]).await?)
            }
            Command::TestTimeout { with_state } => controller::test_timeout(
                &s.ask("test_timeout", vec![Value::Boolean(with_state)])
                    .await?,
            ),
            Command::Monitor => {
                let watch = s.monitor(|line| println!("{line}"));
                tokio::select! {
                    () = watch => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
                controller::Printed::default()
            }
            Command::Welcome
            | Command::Standby
            | Command::ShowSettings
            | Command::Convert { .. } => controller::Printed::default(),
        })
    }
    .await;
    match printed {
        // zeek-client's client.pretty_json off: the JSON on one line.
        Ok(mut p) if !pretty => {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&p.stdout) {
                p.stdout = format!("{}\n", controller::settings::compact(&v));
            }
            emit(&p)
        }
        Ok(p) => emit(&p),
        Err(e) => emit(&controller::Printed::error(&e)),
    }
}
