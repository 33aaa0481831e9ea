//go:build race

package limiter

// raceEnabled scales the largest tests down under the race detector.
const raceEnabled = true
