use super::check_agent_address;

#[test]
fn agent_addresses_are_host_and_port() {
    for ok in [
        "127.0.0.1:2151",
        "[::1]:2151",
        "sensor-1.example:2151",
        "h:0",
    ] {
        assert_eq!(check_agent_address(ok).ok(), Some(ok.to_owned()), "{ok}");
    }
    for bad in ["localhost", "::1", "[::1]", "h:", "h:65536", ":1", "h:x"] {
        let e = check_agent_address(bad).expect_err(bad);
        assert!(e.to_string().contains("expected HOST:PORT"), "{e}");
    }
}
