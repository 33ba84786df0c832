module github.com/hotcluster/hotcluster/examples

go 1.22

require (
	github.com/hotcluster/hotcluster/child v0.0.0
	golang.org/x/sys v0.30.0
)

// The examples build against this repository's worker library.
replace github.com/hotcluster/hotcluster/child => ../child
