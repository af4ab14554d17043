# aws 5.100 is the first release with data.aws_region's `region` attribute (`name` is deprecated in 6.x).
terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.100"
    }
  }
}
