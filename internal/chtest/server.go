package chtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Server is a ClickHouse server of the test's own (Debian's clickhouse-server, as scripts/test
// installs it), on loopback with its data in a temporary directory, for tests that stop and
// start the server. Without the binary the test fails under CI=true and skips otherwise.
type Server struct {
	Addr string // host:port of the native protocol
	dir  string
	port int
	cmd  *exec.Cmd
	t    testing.TB
}

// StartServer starts a private server; it is stopped when the test ends.
func StartServer(t testing.TB) *Server {
	t.Helper()
	if _, err := exec.LookPath("clickhouse-server"); err != nil {
		unavailable(t, "this test runs its own clickhouse-server, which is not installed: run ./scripts/test")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &Server{dir: t.TempDir(), port: port, Addr: "127.0.0.1:" + strconv.Itoa(port), t: t}
	for _, d := range []string{"tmp", "uf", "fs"} {
		if err := os.MkdirAll(filepath.Join(s.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// Start starts the server (again) on its data and waits until it answers.
func (s *Server) Start() {
	s.t.Helper()
	d := s.dir
	s.cmd = exec.Command("clickhouse-server", "--config-file=/etc/clickhouse-server/config.xml", "--",
		"--path="+d+"/", "--tmp_path="+d+"/tmp/", "--user_files_path="+d+"/uf/", "--format_schema_path="+d+"/fs/",
		"--logger.log="+d+"/log", "--logger.errorlog="+d+"/err", "--listen_host=127.0.0.1",
		"--tcp_port="+strconv.Itoa(s.port), "--http_port=0", "--interserver_http_port=0")
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start clickhouse-server: %v", err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := run(ctx, s.Addr, "SELECT 1")
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(d, "err"))
			s.t.Fatalf("clickhouse-server on %s not answering after 60 s: %v\n%s", s.Addr, err, tail(b, 2000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop stops the server (SIGTERM, then SIGKILL after 20 s); its data stays.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
	s.cmd = nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return fmt.Sprintf("%s", b)
}
