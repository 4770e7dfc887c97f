-- Test-only Prosody 0.12 config (used by tests/xmpp_support.py; see shared notes/xmpp.md §1).
-- Loopback only, port from $XMPP_TEST_PORT, no s2s, no HTTP: one listening socket.
-- Paths come from the environment (ENV_<NAME> reads $NAME in a Prosody 0.12 config), so this
-- one static file serves every temporary directory and port.
data_path = ENV_XMPP_TEST_DIR .. "/data"
pidfile = ENV_XMPP_TEST_DIR .. "/prosody.pid"
-- Self-signed cert made by the fixture; found by host name (localhost.crt / localhost.key).
certificates = ENV_XMPP_TEST_DIR .. "/certs"
log = { { levels = { min = "info" }, to = "file", filename = ENV_XMPP_TEST_DIR .. "/prosody.log" } }
-- CI containers run as uid 0: without this Prosody refuses to start AND hangs instead of exiting.
run_as_root = true
interfaces = { "127.0.0.1" }
local_interfaces = { "127.0.0.1" }
c2s_ports = { tonumber(ENV_XMPP_TEST_PORT) }
c2s_direct_tls_ports = { }
-- smacks: the sender's proof of acceptance; offline: store for a recipient without presence.
-- No mod_limits: it would throttle c2s to 10 KiB/s and slow the bulk tests down.
-- (A local table: reading an option back inside the config file does not work.)
local modules = { "disco", "roster", "saslauth", "register", "ping", "carbons", "offline" }
-- XMPP_TEST_NO_TLS=1 gives a server that offers no STARTTLS at all (a cert-less mod_tls
-- would still offer it and then fail the handshake), for the "plaintext only if allowed" tests.
if ENV_XMPP_TEST_NO_TLS ~= "1" then
    modules[#modules + 1] = "tls"
end
-- XMPP_TEST_NO_SMACKS=1: a server without stream management, like some in the wild.
if ENV_XMPP_TEST_NO_SMACKS ~= "1" then
    modules[#modules + 1] = "smacks"
end
modules_enabled = modules
modules_disabled = { "s2s", "s2s_auth_certs" }
authentication = "internal_hashed"
storage = "internal"
-- STARTTLS is offered but not required, so the plaintext path can be tested too.
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
allow_registration = true
min_seconds_between_registrations = 0

VirtualHost "localhost"

-- Anyone may create rooms; unlocked at once, or other joiners get item-not-found for 300 s.
Component "conference.localhost" "muc"
    restrict_room_creation = false
    muc_room_locking = false

-- Room creation refused for ordinary users: lets tests see a "room refused" (not-allowed) error.
Component "locked.localhost" "muc"
    restrict_room_creation = true
