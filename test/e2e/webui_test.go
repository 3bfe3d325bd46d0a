package e2e

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// summaryLine is run.mjs's last line.
var summaryLine = regexp.MustCompile(`^\d+ passed, \d+ failed$`)

// webuiTools finds what the browser test needs: node, Debian's chromium
// and playwright-core installed in test/webui (test/setup-env.sh installs
// all three). It fails when CI is set and one is missing, and skips
// otherwise.
func webuiTools(t *testing.T) (node, chromium, dir string) {
	t.Helper()
	missing := func(what string) {
		t.Helper()
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is missing (test/setup-env.sh installs it)", what)
		}
		t.Skipf("%s is missing; run test/setup-env.sh", what)
	}
	dir, err := filepath.Abs("../webui")
	if err != nil {
		t.Fatal(err)
	}
	if node, err = exec.LookPath("node"); err != nil {
		missing("node")
	}
	chromium = os.Getenv("DW_CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		missing("chromium (" + chromium + ")")
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "playwright-core", "package.json")); err != nil {
		missing("playwright-core (npm ci in test/webui)")
	}
	return node, chromium, dir
}

// The web page in a real browser against `docker-worker dev` on real
// Docker (test/webui/run.mjs): submit a task through the form and watch
// its log lines arrive while it runs, see its task text escaped, open an
// artifact, filter the task list, cancel a running task, and type a
// command into an interactive shell. Screenshots of each page go to
// test/webui/screenshots.
func TestWebUIInBrowser(t *testing.T) {
	runBrowserTest(t, false, 9, []string{"task-list", "submit-errors", "task-running", "task-completed", "task-page", "artifact", "task-cancelled", "shell"})
}

// With `dev --ui-admin` the page never asks for credentials: the server
// signs its actions (createTask, rerunTask) and the URL of a private
// artifact.
func TestWebUIAdminSigningInBrowser(t *testing.T) {
	runBrowserTest(t, true, 1, []string{"ui-admin-private-artifact"})
}

// runBrowserTest starts dev (with --ui-admin when uiAdmin is set), runs
// test/webui/run.mjs against it and wants steps steps passed and the
// screenshots named.
func runBrowserTest(t *testing.T, uiAdmin bool, steps int, screenshots []string) {
	dockertestRequire(t)
	node, chromium, dir := webuiTools(t)
	bin := workerBinary(t)
	dataDir := t.TempDir()
	var args []string
	mode := "0"
	if uiAdmin {
		args, mode = []string{"--ui-admin"}, "1"
	}
	q, stop := startDev(t, bin, dataDir, args...)
	defer stop()
	raw, err := os.ReadFile(filepath.Join(dataDir, "client.json"))
	if err != nil {
		t.Fatal(err)
	}
	var admin struct{ ClientID, AccessToken string }
	if err := json.Unmarshal(raw, &admin); err != nil {
		t.Fatal(err)
	}
	shots := filepath.Join(dir, "screenshots")
	if uiAdmin {
		shots = filepath.Join(dir, "screenshots", "ui-admin")
	}
	if err := os.RemoveAll(shots); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	cmd := exec.CommandContext(ctx, node, filepath.Join(dir, "run.mjs"))
	cmd.Dir = dir
	cmd.WaitDelay = 10 * time.Second
	cmd.Env = append(os.Environ(),
		"DW_ROOT_URL="+q.rootURL, "DW_CLIENT_ID="+admin.ClientID, "DW_ACCESS_TOKEN="+admin.AccessToken,
		"DW_IMAGE="+image, "DW_SCREENSHOTS="+shots, "DW_CHROMIUM="+chromium, "DW_UI_ADMIN="+mode)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var passed, failed []string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case summaryLine.MatchString(line):
			// Not alone on a line in the test's output: the suite's own
			// closing line is go test's.
			t.Logf("browser steps (%s)", line)
		default:
			t.Log(line)
		}
		switch {
		case strings.HasPrefix(line, "ok "):
			passed = append(passed, line)
		case strings.HasPrefix(line, "FAIL "):
			failed = append(failed, line)
		}
	}
	err = cmd.Wait()
	for _, f := range failed {
		t.Error(f)
	}
	if err != nil {
		t.Errorf("run.mjs: %v\n%s", err, stderr.String())
	}
	// The script's steps, each of which must have run and passed.
	if len(passed) != steps {
		t.Errorf("%d browser steps passed, want %d", len(passed), steps)
	}
	for _, name := range screenshots {
		if st, err := os.Stat(filepath.Join(shots, name+".png")); err != nil || st.Size() == 0 {
			t.Errorf("screenshot %s.png missing: %v", name, err)
		}
	}
	t.Logf("screenshots in %s", shots)
}
