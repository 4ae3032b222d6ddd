// The program recipes/go-hello.yaml cross-compiles for every target platform. It says
// which platform it was built for (stamped at link time with
// -ldflags "-X main.platform=$TARGETPLATFORM") and what the Go toolchain compiled it
// for (runtime.GOARCH, and GOARM from the build settings the binary carries), so a
// wrong GOARCH or GOARM shows in its output:
//
//	hello from linux/arm/v6 (GOARCH=arm GOARM=6)
package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// platform is set by the linker; a build without the stamp says so.
var platform = "unknown (built without -X main.platform)"

func main() {
	compiled := "GOARCH=" + runtime.GOARCH
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "GOARM" {
				compiled += " GOARM=" + s.Value
			}
		}
	}
	fmt.Printf("hello from %s (%s)\n", platform, compiled)
}
