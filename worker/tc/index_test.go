package tc

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestIndexCalls(t *testing.T) {
	var (
		mu    sync.Mutex
		calls []string
	)
	srv := fakeService(t, testVerifier(), func(w http.ResponseWriter, r *http.Request, _ *hawkResult) {
		mu.Lock()
		calls = append(calls, r.Method+" "+r.RequestURI)
		mu.Unlock()
		switch {
		case r.Method == http.MethodPut:
			var in map[string]any
			if err := json.Unmarshal(readBody(t, r), &in); err != nil {
				t.Errorf("insertTask body: %v", err)
			}
			if diff := cmp.Diff(map[string]any{"taskId": "T", "rank": 7.0, "data": map[string]any{}, "expires": "2027-01-02T03:04:05.000Z"}, in); diff != "" {
				t.Errorf("insertTask body (-want +got):\n%s", diff)
			}
			w.Write([]byte(`{"namespace":"a.b","taskId":"T","rank":7,"data":{},"expires":"2027-01-02T03:04:05.000Z"}`))
		case strings.HasPrefix(r.URL.Path, "/api/index/v1/task/gone"):
			writeTCError(w, http.StatusNotFound, "ResourceNotFound", "Indexed task not found")
		case strings.HasPrefix(r.URL.Path, "/api/index/v1/task/"):
			w.Write([]byte(`{"namespace":"a.b","taskId":"T","rank":1.5,"data":{"k":[1]},"expires":"2027-01-02T03:04:05.678Z"}`))
		case strings.HasPrefix(r.URL.Path, "/api/index/v1/namespaces/"):
			w.Write([]byte(`{"namespaces":[{"namespace":"a.b","name":"b","expires":"2027-01-03T00:00:00.000Z"}],"continuationToken":"tok"}`))
		default:
			w.Write([]byte(`{"tasks":[{"namespace":"a.b","taskId":"T","rank":3,"data":{},"expires":"2027-01-02T03:04:05.678Z"}]}`))
		}
	})
	c := testClient(srv, -1)
	ctx := t.Context()

	got, err := c.FindTask(ctx, "a.b")
	if err != nil {
		t.Fatal(err)
	}
	want := &IndexedTask{Namespace: "a.b", TaskID: "T", Rank: 1, Data: json.RawMessage(`{"k":[1]}`), Expires: time.Date(2027, 1, 2, 3, 4, 5, 678e6, time.UTC)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("FindTask (-want +got):\n%s", diff)
	}
	if _, err := c.FindTask(ctx, "gone"); !IsNotFound(err) {
		t.Errorf("FindTask of a missing path = %v, want a 404", err)
	}
	ins, err := c.InsertTask(ctx, "a.b", InsertTaskRequest{TaskID: "T", Rank: 7, Expires: time.Date(2027, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600)).Add(time.Hour)})
	if err != nil || ins.Rank != 7 {
		t.Fatalf("InsertTask = %+v, %v", ins, err)
	}
	nss, err := c.ListNamespaces(ctx, "", "", 0)
	if err != nil || len(nss.Namespaces) != 1 || nss.Namespaces[0].Name != "b" || nss.ContinuationToken != "tok" {
		t.Fatalf("ListNamespaces = %+v, %v", nss, err)
	}
	if _, err := c.ListNamespaces(ctx, "a", nss.ContinuationToken, 10); err != nil {
		t.Fatal(err)
	}
	tasks, err := c.ListTasks(ctx, "a", "", 2)
	if err != nil || len(tasks.Tasks) != 1 || tasks.Tasks[0].Rank != 3 || tasks.ContinuationToken != "" {
		t.Fatalf("ListTasks = %+v, %v", tasks, err)
	}
	if diff := cmp.Diff([]string{
		"GET /api/index/v1/task/a.b",
		"GET /api/index/v1/task/gone",
		"PUT /api/index/v1/task/a.b",
		"GET /api/index/v1/namespaces/",
		"GET /api/index/v1/namespaces/a?continuationToken=tok&limit=10",
		"GET /api/index/v1/tasks/a?limit=2",
	}, calls); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
	if _, err := (InsertTaskRequest{TaskID: "T"}).MarshalJSON(); err == nil {
		t.Error("an insert request without expires encoded")
	}
}

func TestIndexedArtifactURL(t *testing.T) {
	c := New(Config{RootURL: "https://tc.example.com/"})
	if got, want := c.IndexedArtifactURL("project.app.latest", "public/build/app.tar.gz"), "https://tc.example.com/api/index/v1/task/project.app.latest/artifacts/public%2Fbuild%2Fapp.tar.gz"; got != want {
		t.Errorf("IndexedArtifactURL = %q, want %q", got, want)
	}
}
