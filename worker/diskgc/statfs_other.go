//go:build !linux

package diskgc

func freeSpace(string) (int64, error) { return 0, errUnsupported }
