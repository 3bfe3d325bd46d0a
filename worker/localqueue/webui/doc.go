// Package webui is the embedded queue's web page: a list of tasks, a task
// page (definition, runs, phase timings, the live log while the task runs
// and the backing log after, artifacts), a form that submits a task or a
// payload, and the interactive shell page the interactive feature's
// shell.html artifact points at (<rootUrl>/shell/).
//
// The pages are static files embedded in the binary (HTML, CSS and
// JavaScript written for this package, plus the xterm terminal emulator
// when `make ui` copied it in). They read the queue through its own REST
// API; the few things the Taskcluster API lacks are under /ui/api/: the
// list of tasks, the validation of a submitted document, and, only when
// [Config].Admin is set (`docker-worker dev --ui-admin`), a signing
// endpoint for the local admin client.
//
// Security: the pages load no script but their own (a Content-Security-
// Policy forbids inline scripts), put task-provided text into the page as
// text only, and the /ui/api/ endpoints answer no cross-origin request (no
// CORS headers; a POST must come from the same origin, by Sec-Fetch-Site or
// Origin). The server package mounts the UI beside the queue API.
package webui
