#!/bin/bash
# A private Postfix instance on loopback for tests and benchmarks (run as root).
#   postfix-instance.sh start DIR PORT MODE [ARG]   MODE: mx-down | relay HOST:PORT
#   postfix-instance.sh stop DIR
# mx-down: an MX for example.com whose mailbox delivery (LMTP) is down, so accepted mail
#   piles up in the deferred queue (the outage case), fsynced before 250 as always.
# relay: relays everything for example.com/example.net to HOST:PORT (spoold) with short
#   queue lifetimes from $POSTFIX_LIFETIME (default 30s) so "5 days" passes in seconds.
set -eu
cmd="$1"; dir="$2"
case "$cmd" in
start)
    port="$3"; mode="$4"; arg="${5:-}"
    mkdir -p "$dir/etc" "$dir/queue" "$dir/data"
    chmod 755 "$dir"  # postfix daemons run as the postfix user and must reach the queue
    chown root "$dir/queue"
    chown postfix "$dir/data"
    cp /etc/postfix/dynamicmaps.cf "$dir/etc/" 2>/dev/null || true
    [ -d /etc/postfix/dynamicmaps.cf.d ] && cp -r /etc/postfix/dynamicmaps.cf.d "$dir/etc/" || true
    cp /etc/postfix/postfix-files "$dir/etc/" 2>/dev/null || true
    [ -d /etc/postfix/postfix-files.d ] && cp -r /etc/postfix/postfix-files.d "$dir/etc/" || true
    # master.cf: the stock services, unchrooted, with smtpd on our loopback port only.
    sed -e 's/^smtp      inet.*$/127.0.0.1:'"$port"' inet n - n - - smtpd/' \
        -e 's/^\([a-z]*[ ]*unix[ ]*[-n][ ]*[-n][ ]*\)y/\1n/' \
        /etc/postfix/master.cf > "$dir/etc/master.cf"
    lifetime="${POSTFIX_LIFETIME:-30s}"
    {
        echo "compatibility_level = 3.6"
        echo "queue_directory = $dir/queue"
        echo "data_directory = $dir/data"
        echo "mail_owner = postfix"
        echo "setgid_group = postdrop"
        echo "myhostname = pfx-$port.test"
        echo "mydomain = test"
        echo "myorigin = pfx-$port.test"
        echo "mydestination ="
        echo "inet_interfaces = 127.0.0.1"
        echo "inet_protocols = ipv4"
        echo "mynetworks = 127.0.0.0/8"
        echo "maillog_file_prefixes = $dir"
        echo "maillog_file = $dir/maillog"
        echo "smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination"
        echo "smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination"
        echo "smtpd_client_connection_count_limit = 0"
        echo "smtpd_client_connection_rate_limit = 0"
        echo "default_process_limit = 200"
        echo "local_recipient_maps ="
        echo "relay_recipient_maps ="
        echo "biff = no"
        echo "smtputf8_enable = no"
        echo "alias_maps ="
        echo "alias_database ="
        if [ "$mode" = "mx-down" ]; then
            echo "relay_domains = example.com, example.net"
            echo "relay_transport = lmtp:inet:127.0.0.1:9"
        else
            echo "relay_domains = example.com, example.net"
            echo "relay_transport = relay:[${arg%:*}]:${arg##*:}"
            echo "maximal_queue_lifetime = $lifetime"
            echo "bounce_queue_lifetime = $lifetime"
            echo "queue_run_delay = 1s"
            echo "minimal_backoff_time = 1s"
            echo "maximal_backoff_time = 2s"
            echo "smtp_connect_timeout = 2s"
            echo "notify_classes ="
        fi
    } > "$dir/etc/main.cf"
    postfix -c "$dir/etc" set-permissions >/dev/null 2>&1 || true
    postfix -c "$dir/etc" check
    postfix -c "$dir/etc" start
    # Wait (bounded) until smtpd answers.
    i=0
    while ! (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; do
        i=$((i + 1)); [ "$i" -gt 100 ] && { echo "postfix did not listen on $port" >&2; exit 1; }
        sleep 0.1
    done
    ;;
stop)
    postfix -c "$dir/etc" stop >/dev/null 2>&1 || postfix -c "$dir/etc" abort >/dev/null 2>&1 || true
    ;;
*)
    echo "usage: $0 start DIR PORT mx-down|relay HOST:PORT | stop DIR" >&2; exit 2 ;;
esac
