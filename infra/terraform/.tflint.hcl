# tflint config for every module under infra/terraform/ (used by dev/terraform_check.py).
# Only the terraform ruleset bundled with tflint is enabled: the cloud rulesets (aws, google, azurerm)
# are plugins that tflint would download from GitHub, which is out of reach here.  With no `source`
# and no `version`, tflint uses the bundled copy and downloads nothing.
config {
  call_module_type = "local"
}

plugin "terraform" {
  enabled = true
  preset  = "recommended"
}
