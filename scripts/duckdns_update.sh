#!/bin/sh
# DuckDNS IP update, run by cron (deploy.sh --duckdns writes the line): duckdns_update.sh <subdomain> <token file>.
# The token is read from its file here and handed to curl on stdin (-K -), so it never appears in a command
# line (ps), the crontab or the log; only DuckDNS's answer (OK / KO) is printed.
set -eu
subdomain=$1
token_file=$2
token=$(tr -d '[:space:]' <"$token_file")
answer=$(printf 'url = "https://www.duckdns.org/update?domains=%s&token=%s&ip="\n' "$subdomain" "$token" |
  curl -fsS -m 30 -K -)
echo "duckdns $subdomain: $answer"
[ "$answer" = OK ]
