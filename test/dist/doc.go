// Package dist tests the release build, test/dist.sh (make dist): the
// tarballs' names, contents and checksums, that a rebuild is
// byte-identical, and that the amd64 binary is static and reports the
// version and commit stamped into it.
package dist
