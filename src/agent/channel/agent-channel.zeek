##! agent-channel.zeek: written by zeek-mgmt-agent into every node's
##! directory and loaded after the cluster backend and `local`.
##!
##! It opens Zeek's WebSocket API (JSON v1) on 127.0.0.1 at the port named by
##! ZEEK_AGENT_CHANNEL_PORT, as the very last step of zeek_init, so that the
##! agent's upgrade succeeding proves every zeek_init handler has run. On its
##! request topic it answers AgentChannel::request: "ping" (who it is, its
##! pid, the peers it has heard from), "get_id_value" (a global's value,
##! as to_json renders it) and "net_stats" (its packet source and
##! get_net_stats() counters). Cluster peers coming and going are told on its
##! reply topic. A ZeroMQ logging node opens no server (a Zeek bug hangs it
##! once a WebSocket client leaves); it still subscribes, so that the agent
##! reaches it through a sibling's server.

@load base/misc/version

@if ( Version::number >= 80000 )

@load base/frameworks/cluster

module AgentChannel;

export {
	## The environment variable holding the server's port.
	const port_env = "ZEEK_AGENT_CHANNEL_PORT" &redef;
	## Where the server listens: loopback only.
	const listen_address = 127.0.0.1 &redef;
	## Topics: <prefix><node>/request and <prefix><node>/reply.
	const topic_prefix = "zeek/agent/node/" &redef;

	## Whether this node's WebSocket server is open.
	global listening = F;

	## A command from the agent: answered by exactly one response.
	global request: event(reqid: string, action: vector of string);
	## The answer to a request, on the node's reply topic.
	global response: event(reqid: string, node: string, success: bool,
	                       data: string, error: string);
	## A cluster peer has come up, or gone.
	global peer_up: event(node: string, peer: string);
	global peer_down: event(node: string, peer: string);
}

type PingAnswer: record {
	node: string;
	id: string;
	pid: count;
	version: string;
	listening: bool;
	peers: vector of string;
};

type NetStatsAnswer: record {
	interface: string;
	live: bool;
	received: count;
	dropped: count;
	link: count;
	bytes: count;
};

function request_topic(node: string): string
	{
	return fmt("%s%s/request", topic_prefix, node);
	}

function reply_topic(node: string): string
	{
	return fmt("%s%s/reply", topic_prefix, node);
	}

function up_peers(): vector of string
	{
	local names: vector of string = vector();
	for ( name, n in Cluster::nodes )
		{
		if ( name != Cluster::node && n?$id )
			names += name;
		}
	return sort(names, strcmp);
	}

function respond(reqid: string, success: bool, data: string, error: string)
	{
	Cluster::publish(reply_topic(Cluster::node), AgentChannel::response,
	                 reqid, Cluster::node, success, data, error);
	}

event AgentChannel::request(reqid: string, action: vector of string)
	{
	if ( |action| == 0 )
		{
		respond(reqid, F, "", "no dispatch arguments provided");
		return;
		}

	local cmd = action[0];

	if ( cmd == "ping" )
		{
		local answer = PingAnswer($node=Cluster::node, $id=Cluster::node_id(),
		                          $pid=getpid(), $version=zeek_version(),
		                          $listening=listening, $peers=up_peers());
		respond(reqid, T, to_json(answer), "");
		return;
		}

	if ( cmd == "get_id_value" )
		{
		if ( |action| < 2 )
			{
			respond(reqid, F, "", "get_id_value expects name of global identifier");
			return;
			}

		local val = lookup_ID(action[1]);

		if ( type_name(val) == "string" )
			{
			local s = cat(val);
			if ( s == "<unknown id>" )
				{
				respond(reqid, F, "", "unknown id");
				return;
				}
			if ( s == "<no ID value>" )
				{
				respond(reqid, F, "", "no ID value");
				return;
				}
			}

		respond(reqid, T, to_json(val), "");
		return;
		}

	if ( cmd == "net_stats" )
		{
		local ns = get_net_stats();
		local src = packet_source();
		# A node that reads no packets has an empty packet source.
		local stats = NetStatsAnswer($interface=src?$path ? src$path : "",
		                             $live=src?$live ? src$live : F,
		                             $received=ns$pkts_recvd,
		                             $dropped=ns$pkts_dropped,
		                             $link=ns$pkts_link, $bytes=ns$bytes_recvd);
		respond(reqid, T, to_json(stats), "");
		return;
		}

	respond(reqid, F, "", fmt("dispatch %s unknown", cmd));
	}

event Cluster::node_up(name: string, id: string)
	{
	if ( Cluster::node != "" )
		Cluster::publish(reply_topic(Cluster::node), AgentChannel::peer_up,
		                 Cluster::node, name);
	}

event Cluster::node_down(name: string, id: string)
	{
	if ( Cluster::node != "" )
		Cluster::publish(reply_topic(Cluster::node), AgentChannel::peer_down,
		                 Cluster::node, name);
	}

function is_logging_node(): bool
	{
@ifdef ( Cluster::Backend::ZeroMQ::listen_log_endpoint )
	if ( Cluster::backend == Cluster::CLUSTER_BACKEND_ZEROMQ &&
	     Cluster::Backend::ZeroMQ::listen_log_endpoint != "" )
		return T;
@endif
	return F;
	}

# The very last zeek_init handler: once the server is open, every other
# handler has run.
event zeek_init() &priority=-10000
	{
	if ( Cluster::node == "" )
		return;

	Cluster::subscribe(request_topic(Cluster::node));

	local port_text = getenv(port_env);
	if ( port_text == "" )
		return;

	if ( /^[0-9]{1,5}$/ != port_text || to_count(port_text) < 1 ||
	     to_count(port_text) > 65535 )
		{
		Reporter::error(fmt("agent channel: bad port '%s' in %s", port_text, port_env));
		return;
		}

	if ( is_logging_node() )
		{
		Reporter::warning(fmt("agent channel: no WebSocket server on %s, a ZeroMQ logging node",
		                      Cluster::node));
		return;
		}

	local opts = Cluster::WebSocketServerOptions($listen_addr=listen_address,
	                 $listen_port=count_to_port(to_count(port_text), tcp));
	if ( ! Cluster::listen_websocket(opts) )
		Reporter::error(fmt("agent channel: cannot listen on %s:%s", listen_address, port_text));
	else
		listening = T;
	}

@endif
