package bootstrap

import _ "embed"

//go:embed bot.yaml
var demoBot []byte

// DemoBotConfig returns the demo virtual agent's configuration (bot.yaml),
// for dialog.Parse. It needs the action lookup_order.
func DemoBotConfig() []byte { return demoBot }
