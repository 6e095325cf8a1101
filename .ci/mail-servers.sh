#!/usr/bin/env bash
# Start (or reuse) the real mail servers the IMAP/SMTP tests talk to, all on 127.0.0.1:
#   - a private Dovecot instance (Debian's dovecot-imapd): IMAP with STARTTLS, IMAPS (implicit
#     TLS), one shared test password for any user name (a static passdb: a passwd-file is re-read
#     at most once a second, too slow for a user per test) and XOAUTH2 tokens checked against a
#     local token-info endpoint (per user);
#   - aiosmtpd (run by `python -m tests.servers smtp`): plain SMTP, STARTTLS + AUTH, implicit
#     TLS + AUTH, delivering into the Dovecot users' Maildirs, plus that token-info endpoint.
# Certificates come from a throw-away CA made with trustme. Everything lives in one temp folder;
# nothing is installed as a system service. Ports, paths and the CA go into an env file.
#
# Usage: .ci/mail-servers.sh [start|stop|status]    (start is idempotent: live servers are reused)
# start and stop hold an flock on "$PREVENT_MAIL_DIR.lock": a second start waits, then reuses.
# Env:   PREVENT_MAIL_DIR (default /tmp/prevent-mail-servers), PREVENT_MAIL_ENV (default
#        /tmp/prevent-mail-servers.env), PYTHON (an interpreter with aiosmtpd and trustme).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
D=${PREVENT_MAIL_DIR:-/tmp/prevent-mail-servers}
D=${D%/}
LOCK="$D.lock"
ENV_FILE=${PREVENT_MAIL_ENV:-/tmp/prevent-mail-servers.env}
PY=${PYTHON:-$(command -v python3 || command -v python || true)}
case "$PY" in
    */*) PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")" ;;   # the servers run from $ROOT
esac

say() { echo "mail-servers: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Whether the PID in file $1 is alive AND is our server for folder $3 ($2: dovecot or smtp). A
# stale pid file may name a reused PID of an unrelated process: never signal that one.
our_pid() {
    local file=$1 kind=$2 dir=$3 pid cmd
    [ -f "$file" ] || return 1
    pid=$(cat "$file" 2>/dev/null) || return 1
    case "$pid" in ''|*[!0-9]*) return 1 ;; esac
    kill -0 "$pid" 2>/dev/null || return 1
    cmd=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null) || return 1
    # Samples: "/usr/sbin/dovecot -c /tmp/prevent-mail-servers/dovecot.conf "
    #          "/tmp/v/bin/python -m tests.servers smtp --dir /tmp/prevent-mail-servers --mail-uid …"
    case "$kind" in
        dovecot) case "$cmd" in *"dovecot -c $dir/dovecot.conf ") return 0 ;; esac ;;
        smtp) case "$cmd" in *" -m tests.servers smtp --dir $dir "*) return 0 ;; esac ;;
    esac
    return 1
}

# Serialise start/stop on one folder (two test runs starting at once used to wipe each other's
# folder and leave orphan servers). Children never inherit fd 9, or the servers would hold it.
take_lock() {
    command -v flock >/dev/null 2>&1 || die "flock is needed (Debian: apt-get install util-linux)"
    mkdir -p "$(dirname "$LOCK")"
    exec 9>"$LOCK"
    if ! flock -n 9; then
        say "waiting for another start/stop on $D ($LOCK)"
        flock -w 900 9 || die "another start/stop held $LOCK for 15 minutes"
    fi
}

# Debian keeps dovecot in /usr/sbin, which is not on a non-root user's PATH.
find_dovecot() {
    DOVECOT=$(command -v dovecot 2>/dev/null || true)
    if [ -z "$DOVECOT" ] && [ -x /usr/sbin/dovecot ]; then DOVECOT=/usr/sbin/dovecot; fi
    [ -n "$DOVECOT" ]
}

# Install dovecot-imapd without letting the package start a system Dovecot on 143/993: a
# policy-rc.d that denies starts while apt runs (only if there is none already), then, on a
# systemd machine, disable and stop the unit the package just enabled. Only ever called right
# after we found Dovecot missing, so an admin's own Dovecot is never touched.
install_dovecot() {
    local policy=/usr/sbin/policy-rc.d ours=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\n# written by prevent-service .ci/mail-servers.sh while installing dovecot-imapd\nexit 101\n' > "$policy"
        chmod 755 "$policy"
        ours=1
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    local ok=1
    apt-get update -qq >&2 9>&- || ok=0
    if [ "$ok" = 1 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends dovecot-imapd >&2 9>&- || ok=0
    fi
    if [ -n "$ours" ]; then rm -f "$policy"; trap - EXIT; fi
    [ "$ok" = 1 ] || die "apt-get update/install dovecot-imapd failed"
    if command -v systemctl >/dev/null 2>&1; then
        systemctl disable dovecot.service dovecot.socket >/dev/null 2>&1 9>&- || true
        systemctl stop dovecot.service dovecot.socket >/dev/null 2>&1 9>&- || true
    fi
}

# Log in as the probe user with a password and with XOAUTH2 (Dovecot starts its auth process
# lazily, so an open port alone does not prove that logins work).
probe_login() {
    [ -f "$1/probe" ] || return 1
    "$PY" - "$2" "$1/probe" <<'PY'
import imaplib, sys
port = int(sys.argv[1])
password, token = open(sys.argv[2]).read().split()
for attempt in ("password", "xoauth2"):
    c = imaplib.IMAP4("127.0.0.1", port, timeout=10)
    if attempt == "password":
        c.login("probe@example.org", password)
    else:
        blob = f"user=probe@example.org\1auth=Bearer {token}\1\1"
        c.authenticate("XOAUTH2", lambda _: blob)
    c.logout()
PY
}

servers_up() {
    [ -f "$ENV_FILE" ] || return 1
    # shellcheck disable=SC1090
    . "$ENV_FILE"
    our_pid "$PREVENT_MAIL_DIR/run/master.pid" dovecot "$PREVENT_MAIL_DIR" \
        && our_pid "$PREVENT_MAIL_DIR/smtp.pid" smtp "$PREVENT_MAIL_DIR" || return 1
    local p
    for p in "$PREVENT_IMAP_PORT" "$PREVENT_IMAPS_PORT" "$PREVENT_SMTP_PORT" \
             "$PREVENT_SMTP_STARTTLS_PORT" "$PREVENT_SMTPS_PORT" "$PREVENT_TOKENINFO_PORT"; do
        port_open "$p" || return 1
    done
    probe_login "$PREVENT_MAIL_DIR" "$PREVENT_IMAP_PORT" 2>/dev/null
}

stop_servers() {
    local dir=$1
    if our_pid "$dir/run/master.pid" dovecot "$dir"; then
        kill "$(cat "$dir/run/master.pid")" || true
    elif [ -f "$dir/run/master.pid" ] && kill -0 "$(cat "$dir/run/master.pid")" 2>/dev/null; then
        say "not stopping PID $(cat "$dir/run/master.pid") from the stale $dir/run/master.pid: not our dovecot"
    fi
    if our_pid "$dir/smtp.pid" smtp "$dir"; then
        kill "$(cat "$dir/smtp.pid")" || true
    elif [ -f "$dir/smtp.pid" ] && kill -0 "$(cat "$dir/smtp.pid")" 2>/dev/null; then
        say "not stopping PID $(cat "$dir/smtp.pid") from the stale $dir/smtp.pid: not our SMTP server"
    fi
    local i
    for i in $(seq 50); do
        our_pid "$dir/run/master.pid" dovecot "$dir" || our_pid "$dir/smtp.pid" smtp "$dir" || return 0
        sleep 0.1
    done
}

case "${1:-start}" in
    stop)
        take_lock; stop_servers "$D"; rm -f "$ENV_FILE"; say "stopped"; exit 0 ;;
    status)
        if servers_up; then say "up ($ENV_FILE)"; exit 0; else say "not running"; exit 1; fi ;;
    start) take_lock ;;
    *) die "unknown command '$1' (start|stop|status)" ;;
esac

if servers_up; then
    say "reusing running servers ($ENV_FILE)"
    exit 0
fi

# --- install what is missing ---------------------------------------------------------------
if ! find_dovecot; then
    [ "$(id -u)" = 0 ] || die "dovecot-imapd is not installed and this is not root: run 'sudo apt-get install dovecot-imapd'"
    say "installing dovecot-imapd"
    install_dovecot
    find_dovecot || die "dovecot-imapd was installed but no dovecot binary is on PATH or in /usr/sbin"
fi
[ -n "$PY" ] || die "no python found; set PYTHON to an interpreter with aiosmtpd and trustme"
"$PY" -c 'import aiosmtpd, trustme' 2>/dev/null \
    || die "$PY lacks aiosmtpd/trustme: pip install -e '.[test]' (or set PYTHON)"

# --- a fresh folder ------------------------------------------------------------------------
stop_servers "$D"
rm -rf "$D"
mkdir -p "$D/run" "$D/state" "$D/mail" "$D/spool"
chmod 755 "$D"   # Dovecot's auth process runs as user dovecot

if [ "$(id -u)" = 0 ]; then
    MAIL_UID=65534; MAIL_GID=65534   # Dovecot refuses uid 0 for mail access
    RUN_AS=""
else
    MAIL_UID=$(id -u); MAIL_GID=$(id -g)
    ME=$(id -un)
    # Rootless Dovecot: every internal and login process runs as us.
    RUN_AS="default_internal_user = $ME
default_login_user = $ME
service anvil {
  chroot =
}
service imap-login {
  chroot =
}"
fi
chown "$MAIL_UID:$MAIL_GID" "$D/mail" "$D/spool"
# The one password every test user logs in with; per-user XOAUTH2 tokens go in $D/tokens.
# A probe user checks below that password and XOAUTH2 logins really work.
PASSWORD=$("$PY" -c 'import secrets; print(secrets.token_urlsafe(12))')
PROBE_TOKEN=$("$PY" -c 'import secrets; print(secrets.token_urlsafe(24))')
echo "$PROBE_TOKEN probe@example.org" > "$D/tokens"
echo "$PASSWORD $PROBE_TOKEN" > "$D/probe"
chmod 644 "$D/tokens"

read -r IMAP_PORT IMAPS_PORT SMTP_PORT SMTP_STARTTLS_PORT SMTPS_PORT TOKENINFO_PORT < <("$PY" - <<'PY'
import socket
socks = [socket.socket() for _ in range(6)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
PY
)

"$PY" - "$D" <<'PY'
import sys
import trustme
d = sys.argv[1]
ca = trustme.CA(organization_name="prevent-service test CA")
cert = ca.issue_cert("127.0.0.1", "localhost")
ca.cert_pem.write_to_path(f"{d}/ca.pem")
cert.cert_chain_pems[0].write_to_path(f"{d}/server.pem")
for extra in cert.cert_chain_pems[1:]:
    extra.write_to_path(f"{d}/server.pem", append=True)
cert.private_key_pem.write_to_path(f"{d}/server.key")
PY
chmod 600 "$D/server.key"

DH=""
[ -f /usr/share/dovecot/dh.pem ] && DH="ssl_dh = </usr/share/dovecot/dh.pem"

cat > "$D/oauth2.conf.ext" <<EOF
tokeninfo_url = http://127.0.0.1:$TOKENINFO_PORT/tokeninfo?access_token=
introspection_url = http://127.0.0.1:$TOKENINFO_PORT/tokeninfo?access_token=
introspection_mode = get
username_attribute = email
timeout_msecs = 5000
EOF

cat > "$D/dovecot.conf" <<EOF
base_dir = $D/run
state_dir = $D/state
log_path = $D/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <$D/server.pem
ssl_key = <$D/server.key
$DH
disable_plaintext_auth = no
# Tests try wrong passwords on purpose: no waiting after a failure. (Dovecot's per-address
# auth penalty still delays the next login from 127.0.0.1 by up to a few seconds; it has no
# setting.)
auth_failure_delay = 0
auth_mechanisms = plain login xoauth2 oauthbearer
mail_location = maildir:~/Maildir
first_valid_uid = 1
mail_max_userip_connections = 50
$RUN_AS
passdb {
  driver = static
  args = password=$PASSWORD
  mechanisms = plain login
}
passdb {
  driver = oauth2
  args = $D/oauth2.conf.ext
  mechanisms = xoauth2 oauthbearer
}
userdb {
  driver = static
  args = uid=$MAIL_UID gid=$MAIL_GID home=$D/mail/%u allow_all_users=yes
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $IMAP_PORT
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $IMAPS_PORT
    ssl = yes
  }
}
EOF

# --- start ---------------------------------------------------------------------------------
"$DOVECOT" -c "$D/dovecot.conf" </dev/null >"$D/dovecot-start.log" 2>&1 9>&- \
    || die "dovecot did not start: $(cat "$D/dovecot-start.log") $(tail -5 "$D/dovecot.log" 2>/dev/null)"

(
    cd "$ROOT"
    PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" setsid nohup "$PY" -m tests.servers smtp \
        --dir "$D" --mail-uid "$MAIL_UID" --mail-gid "$MAIL_GID" \
        --plain-port "$SMTP_PORT" --starttls-port "$SMTP_STARTTLS_PORT" \
        --tls-port "$SMTPS_PORT" --tokeninfo-port "$TOKENINFO_PORT" \
        >"$D/smtp.log" 2>&1 < /dev/null 9>&- &
    echo $! > "$D/smtp.pid"
)

cat > "$ENV_FILE.tmp" <<EOF
PREVENT_MAIL_DIR=$D
PREVENT_IMAP_PORT=$IMAP_PORT
PREVENT_IMAPS_PORT=$IMAPS_PORT
PREVENT_SMTP_PORT=$SMTP_PORT
PREVENT_SMTP_STARTTLS_PORT=$SMTP_STARTTLS_PORT
PREVENT_SMTPS_PORT=$SMTPS_PORT
PREVENT_TOKENINFO_PORT=$TOKENINFO_PORT
PREVENT_MAIL_CA=$D/ca.pem
PREVENT_MAIL_PASSWORD=$PASSWORD
PREVENT_MAIL_TOKENS=$D/tokens
PREVENT_MAIL_ROOT=$D/mail
PREVENT_SMTP_SPOOL=$D/spool
PREVENT_DOVECOT_CONF=$D/dovecot.conf
EOF

for i in $(seq 100); do
    if [ -f "$D/run/master.pid" ] && port_open "$IMAP_PORT" && port_open "$IMAPS_PORT" \
        && port_open "$SMTP_PORT" && port_open "$SMTP_STARTTLS_PORT" && port_open "$SMTPS_PORT" \
        && port_open "$TOKENINFO_PORT"; then
        probe_login "$D" "$IMAP_PORT" \
            || die "IMAP login does not work; see $D/dovecot.log: $(grep -i -E 'error|fatal' "$D/dovecot.log" | tail -5)"
        mv "$ENV_FILE.tmp" "$ENV_FILE"
        say "up: IMAP $IMAP_PORT (STARTTLS), IMAPS $IMAPS_PORT, SMTP $SMTP_PORT, SMTP+STARTTLS $SMTP_STARTTLS_PORT, SMTPS $SMTPS_PORT ($ENV_FILE)"
        exit 0
    fi
    our_pid "$D/smtp.pid" smtp "$D" || die "the SMTP server exited: $(tail -20 "$D/smtp.log")"
    sleep 0.1
done
rm -f "$ENV_FILE.tmp"
die "servers did not answer within 10 s; logs: $D/dovecot.log $D/smtp.log: $(tail -5 "$D/dovecot.log" 2>/dev/null) $(tail -5 "$D/smtp.log")"
