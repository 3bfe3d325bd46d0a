package main

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	chainoftrust "go.dockerworker.dev/docker-worker/features/chainOfTrust"
)

const cotUsage = `usage: docker-worker cot <command> [flags]

commands:
  verify --public-key FILE DIR   check a downloaded chain-of-trust set: DIR holds
                                 public/chain-of-trust.json, its .sig, and the
                                 artifacts it lists, each at its artifact name
  keygen --out FILE              write a new signing key (ed25519SigningKeyLocation
                                 format) and print its public key
  pubkey --key FILE              print the public key of a signing key
`

func runCot(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, cotUsage)
		return 2
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, cotUsage)
		return 0
	}
	switch args[0] {
	case "verify":
		return cotVerify(ctx, args[1:], stdout, stderr)
	case "keygen":
		return cotKeygen(args[1:], stdout, stderr)
	case "pubkey":
		return cotPubkey(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "docker-worker cot: unknown command %q\n\n%s", args[0], cotUsage)
	return 2
}

// cotVerify checks the signature of a downloaded chain-of-trust document
// and the sha256 of every artifact it lists that is present in the
// directory. Exit 0: everything checked out; 1: something did not.
func cotVerify(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("cot verify", "cot verify --public-key FILE [--allow-missing] DIR", stderr)
	keyPath := fs.String("public-key", "", "the worker pool's ed25519 public key (base64 of 32 bytes)")
	allowMissing := fs.Bool("allow-missing", false, "do not fail when a listed artifact is not in DIR")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if *keyPath == "" || fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	dir := fs.Arg(0)
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "docker-worker cot verify: "+format+"\n", a...)
		return 1
	}
	keyData, err := os.ReadFile(*keyPath)
	if err != nil {
		return fail("%v", err)
	}
	key, err := chainoftrust.ParsePublicKey(keyData)
	if err != nil {
		return fail("%s: %v", *keyPath, err)
	}
	doc, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(chainoftrust.DocumentName)))
	if err != nil {
		return fail("%v", err)
	}
	sig, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(chainoftrust.SignatureName)))
	if err != nil {
		return fail("%v", err)
	}
	d, err := chainoftrust.Verify(doc, sig, key)
	if err != nil {
		return fail("%s: %v", chainoftrust.DocumentName, err)
	}
	fmt.Fprintf(stdout, "signature ok: task %s run %d, worker %s/%s, image %s\n",
		d.TaskID, d.RunID, d.WorkerGroup, d.WorkerID, d.Environment.ImageHash)

	names := make([]string, 0, len(d.Artifacts))
	for n := range d.Artifacts {
		names = append(names, n)
	}
	sort.Strings(names)
	bad, missing, ok := 0, 0, 0
	for _, n := range names {
		want := d.Artifacts[n].SHA256
		if !filepath.IsLocal(filepath.FromSlash(n)) {
			fmt.Fprintf(stdout, "%-9s %s (not a local path; not checked)\n", "SKIPPED", n)
			bad++
			continue
		}
		got, err := fileSHA256(filepath.Join(dir, filepath.FromSlash(n)))
		switch {
		case errors.Is(err, os.ErrNotExist):
			fmt.Fprintf(stdout, "%-9s %s\n", "missing", n)
			missing++
		case err != nil:
			fmt.Fprintf(stdout, "%-9s %s: %v\n", "ERROR", n, err)
			bad++
		case got != want:
			fmt.Fprintf(stdout, "%-9s %s: sha256 %s, the document says %s\n", "MISMATCH", n, got, want)
			bad++
		default:
			fmt.Fprintf(stdout, "%-9s %s\n", "ok", n)
			ok++
		}
	}
	fmt.Fprintf(stdout, "%d verified, %d missing, %d failed\n", ok, missing, bad)
	if bad > 0 || (missing > 0 && !*allowMissing) {
		return 1
	}
	return 0
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func cotKeygen(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("cot keygen", "cot keygen --out FILE", stderr)
	out := fs.String("out", "", "where to write the signing key (mode 0600; must not exist)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if *out == "" || fs.NArg() != 0 {
		fs.Usage()
		return 2
	}
	pub, err := chainoftrust.WriteNewKey(*out)
	if err != nil {
		fmt.Fprintf(stderr, "docker-worker cot keygen: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, base64.StdEncoding.EncodeToString(pub))
	return 0
}

func cotPubkey(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("cot pubkey", "cot pubkey --key FILE", stderr)
	keyPath := fs.String("key", "", "a signing key file (ed25519SigningKeyLocation format)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if *keyPath == "" || fs.NArg() != 0 {
		fs.Usage()
		return 2
	}
	data, err := os.ReadFile(*keyPath)
	if err == nil {
		var key ed25519.PrivateKey
		if key, err = chainoftrust.ParsePrivateKey(data); err == nil {
			fmt.Fprintln(stdout, base64.StdEncoding.EncodeToString(key.Public().(ed25519.PublicKey)))
			return 0
		}
	}
	fmt.Fprintf(stderr, "docker-worker cot pubkey: %v\n", err)
	return 1
}
