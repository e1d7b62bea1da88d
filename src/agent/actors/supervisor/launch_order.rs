//! Which nodes launch now: a function of plain data.

/// What the launch order needs to know of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate<'a> {
    pub name: &'a str,
    /// The role's place in ZeekControl's order: loggers, manager, proxies,
    /// workers.
    pub rank: u8,
    /// The node is `PENDING`: being launched, or waiting to be.
    pub pending: bool,
    /// It has neither a process nor a revival scheduled: it can be started.
    pub idle: bool,
    /// It will bind its port (see `layout::binds_port`).
    pub binds_port: bool,
}

/// The nodes to launch now, in launch order: every pending, idle node,
/// group by group. With port checks on, a group waits until no node of an
/// earlier group that binds its port is still pending.
pub fn launch_now<'a>(candidates: &[Candidate<'a>], port_checks: bool) -> Vec<&'a str> {
    let mut order: Vec<&Candidate<'a>> = candidates.iter().collect();
    order.sort_by_key(|c| (c.rank, c.name));
    let mut blocking_rank = None;
    let mut now = Vec::new();
    for c in order {
        if blocking_rank.is_some_and(|r| r < c.rank) {
            break;
        }
        if c.pending && c.idle {
            now.push(c.name);
        }
        if port_checks && c.pending && c.binds_port {
            blocking_rank = Some(c.rank);
        }
    }
    now
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str, rank: u8, pending: bool, idle: bool, binds_port: bool) -> Candidate<'_> {
        Candidate {
            name,
            rank,
            pending,
            idle,
            binds_port,
        }
    }

    #[test]
    fn without_port_checks_every_pending_idle_node_launches_in_role_order() {
        let nodes = [
            c("worker-1", 3, true, true, false),
            c("manager", 1, true, true, true),
            c("proxy-1", 2, true, true, true),
            c("logger", 0, true, true, true),
            c("worker-2", 3, true, false, false),
            c("worker-3", 3, false, true, false),
        ];
        assert_eq!(
            launch_now(&nodes, false),
            ["logger", "manager", "proxy-1", "worker-1"]
        );
    }

    #[test]
    fn with_port_checks_a_group_waits_for_the_ports_before_it() {
        let mut nodes = vec![
            c("manager", 1, true, true, true),
            c("proxy-1", 2, true, true, false),
            c("worker-1", 3, true, true, false),
        ];
        assert_eq!(launch_now(&nodes, true), ["manager"]);
        // Launched, its port not yet open: nothing more.
        nodes[0].idle = false;
        assert!(launch_now(&nodes, true).is_empty());
        // Running: the proxy (which binds nothing) and the workers follow.
        nodes[0].pending = false;
        assert_eq!(launch_now(&nodes, true), ["proxy-1", "worker-1"]);
    }

    #[test]
    fn nodes_of_one_group_launch_together() {
        let nodes = [
            c("proxy-1", 2, true, true, true),
            c("proxy-2", 2, true, true, true),
            c("worker-1", 3, true, true, false),
        ];
        assert_eq!(launch_now(&nodes, true), ["proxy-1", "proxy-2"]);
    }
}
