package main

// portHolder names the process listening on addr, or "" when unknown.
func portHolder(addr string) string { return "" }
