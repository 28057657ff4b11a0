#!/usr/bin/env bash
# Runs a command against the cluster of this directory on one machine: 2 shards × 2 replicas of
# the local clickhouse-server on loopback, coordinated by one ZooKeeper (Debian's `zookeeper`
# package; ClickHouse 18.16 predates Keeper), configured from config.d/whocould-cluster.xml,
# macros/*.xml and users.d/whocould.xml with hosts and ports made local. Everything lives in a
# temporary directory and is stopped at the end.
#
#   deploy/clickhouse/local-cluster.sh go test -count=1 -run Cluster ./store/clickhouse
#
# The command gets WHOCOULD_CLICKHOUSE (the first server, ch-1-1) and
# WHOCOULD_CLICKHOUSE_CLUSTER=whocould. The default user's profile takes the settings of the
# whocould profile (the tests log in as default).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[[ $# -gt 0 ]] || { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
command -v clickhouse-server >/dev/null || { echo "local-cluster: clickhouse-server is not installed" >&2; exit 1; }
zkjar=/usr/share/java/zookeeper.jar
[[ -f $zkjar ]] && command -v java >/dev/null || {
  echo "local-cluster: needs ZooKeeper and Java: apt-get install zookeeper" >&2; exit 1; }

dir=$(mktemp -d /tmp/whocould-cluster.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# ZooKeeper, one node.
zkport=$(freeport)
mkdir -p "$dir/zk/data"
printf 'tickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir=%s\nclientPort=%s\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\n' \
  "$dir/zk/data" "$zkport" >"$dir/zk/zoo.cfg"
java -cp "$zkjar" org.apache.zookeeper.server.quorum.QuorumPeerMain "$dir/zk/zoo.cfg" >"$dir/zk/out" 2>&1 &
pids+=($!)

# The four servers: the deploy files, hosts and ports made local. ClickHouse 18.16 wants
# <yandex> as the root of every configuration file.
declare -A tcp http
for node in ch-1-1 ch-1-2 ch-2-1 ch-2-2; do tcp[$node]=$(freeport); http[$node]=$(freeport); done
local_xml() {
  local s=$1 node
  s=${s//<clickhouse>/<yandex>}
  s=${s//<\/clickhouse>/<\/yandex>}
  for node in ch-1-1 ch-1-2 ch-2-1 ch-2-2; do
    s=${s//<host>$node<\/host><port>9000<\/port>/<host>127.0.0.1<\/host><port>${tcp[$node]}<\/port>}
  done
  s=$(printf '%s' "$s" | sed -e "s|<node><host>keeper-1</host><port>9181</port></node>|<node><host>127.0.0.1</host><port>$zkport</port></node>|" \
    -e '/<host>keeper-[23]<\/host>/d' -e '/<interserver_http_port>/d')
  printf '%s\n' "$s"
}
for node in ch-1-1 ch-1-2 ch-2-1 ch-2-2; do
  n=$dir/$node
  mkdir -p "$n/etc/config.d" "$n/etc/users.d" "$n/data/tmp" "$n/data/uf" "$n/data/fs"
  cp /etc/clickhouse-server/config.xml /etc/clickhouse-server/users.xml "$n/etc/"
  local_xml "$(cat "$here/config.d/whocould-cluster.xml")" >"$n/etc/config.d/whocould-cluster.xml"
  local_xml "$(cat "$here/macros/$node.xml")" >"$n/etc/config.d/macros.xml"
  printf '<yandex><interserver_http_host>127.0.0.1</interserver_http_host></yandex>\n' >"$n/etc/config.d/local.xml"
  local_xml "$(cat "$here/users.d/whocould.xml")" >"$n/etc/users.d/whocould.xml"
  # The tests log in as default: give its profile the whocould profile's settings.
  sed -n '/<profiles>/,/<\/profiles>/p' "$here/users.d/whocould.xml" | sed -e 's/<whocould>/<default>/' -e 's/<\/whocould>/<\/default>/' |
    { echo '<yandex>'; cat; echo '</yandex>'; } >"$n/etc/users.d/default-profile.xml"
  clickhouse-server --config-file="$n/etc/config.xml" -- --path="$n/data/" --tmp_path="$n/data/tmp/" \
    --user_files_path="$n/data/uf/" --format_schema_path="$n/data/fs/" --logger.log="$n/log" --logger.errorlog="$n/err" \
    --listen_host=127.0.0.1 --tcp_port="${tcp[$node]}" --http_port=0 --interserver_http_port="${http[$node]}" >"$n/stdout" 2>&1 &
  pids+=($!)
done

for node in ch-1-1 ch-1-2 ch-2-1 ch-2-2; do
  ok=
  for _ in $(seq 1 150); do
    if [[ $(clickhouse-client --port "${tcp[$node]}" -q "SELECT count() FROM system.zookeeper WHERE path = '/'" 2>/dev/null) =~ ^[1-9] ]]; then
      ok=1; break
    fi
    sleep 0.2
  done
  [[ -n $ok ]] || { echo "local-cluster: $node did not start (or reach ZooKeeper):" >&2; tail -20 "$dir/$node/err" >&2; exit 1; }
done
echo "== local cluster whocould: ch-1-1 127.0.0.1:${tcp[ch-1-1]}, ch-1-2 :${tcp[ch-1-2]}, ch-2-1 :${tcp[ch-2-1]}, ch-2-2 :${tcp[ch-2-2]}; ZooKeeper :$zkport" >&2

export WHOCOULD_CLICKHOUSE=127.0.0.1:${tcp[ch-1-1]} WHOCOULD_CLICKHOUSE_CLUSTER=whocould
"$@"
