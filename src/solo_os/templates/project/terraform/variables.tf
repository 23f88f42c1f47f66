# Inputs of the solo-os AWS deployment. docs/deploy.md has the same list with examples.

variable "name" {
  description = "Prefix of every resource name (lowercase letters, digits and '-')."
  type        = string
  default     = "solo-os"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.name))
    error_message = "name: 2 to 31 lowercase letters, digits or '-', starting with a letter."
  }
}

variable "aws_region" {
  description = "AWS region to deploy into, e.g. eu-west-1."
  type        = string
}

variable "image" {
  description = "Container image URI in ECR (same account and region), built with --build-arg EXTRAS=aws. Lambda and the ECS worker run the same image."
  type        = string
}

variable "architecture" {
  description = "CPU architecture of the image: x86_64 or arm64."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture must be x86_64 or arm64."
  }
}

variable "app" {
  description = "SOLO_OS_APP inside the image: path/to/app.py or module:attribute."
  type        = string
  default     = "/app/app.py"
}

variable "vpc_id" {
  description = "VPC for the database, the Lambda function and the worker."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets in at least two availability zones, with egress (NAT or VPC endpoints) to Secrets Manager, ECR and CloudWatch Logs."
  type        = list(string)

  validation {
    condition     = length(var.private_subnet_ids) >= 2
    error_message = "private_subnet_ids: RDS needs subnets in at least two availability zones."
  }
}

variable "webhook_secrets" {
  description = "Environment variable names of the sources' signing secrets (the secret_env of each source), e.g. [\"STRIPE_WEBHOOK_SECRET\"]. One Secrets Manager secret is created per name; put the value in with aws secretsmanager put-secret-value."
  type        = list(string)

  validation {
    condition     = alltrue([for n in var.webhook_secrets : can(regex("^[A-Za-z_][A-Za-z0-9_]*$", n))])
    error_message = "webhook_secrets: each entry must be an environment variable name."
  }
}

variable "environment" {
  description = "More environment variables for the app (non-secret), given to the Lambda function and the worker."
  type        = map(string)
  default     = {}
}

variable "log_level" {
  description = "LOG_LEVEL: debug, info, warn or error."
  type        = string
  default     = "info"
}

variable "retention_days" {
  description = "SOLO_OS_RETENTION_DAYS: finished executions older than this are pruned daily by the worker (0: never)."
  type        = number
  default     = 30
}

variable "log_retention_days" {
  description = "Days CloudWatch keeps the logs of the Lambda function and the worker."
  type        = number
  default     = 30
}

variable "lambda_memory_mb" {
  description = "Memory of the ingress Lambda function (MB); CPU grows with it."
  type        = number
  default     = 512
}

variable "lambda_timeout_seconds" {
  description = "Timeout of one ingress invocation (seconds)."
  type        = number
  default     = 30
}

variable "lambda_reserved_concurrency" {
  description = "Concurrent ingress invocations reserved and capped (-1: unreserved). Each warm invocation holds up to two database connections: keep it below the database's max_connections."
  type        = number
  default     = -1
}

variable "worker_count" {
  description = "Number of worker tasks (ECS Fargate)."
  type        = number
  default     = 1
}

variable "worker_cpu" {
  description = "CPU units of one worker task (256, 512, 1024, ...)."
  type        = number
  default     = 512
}

variable "worker_memory_mb" {
  description = "Memory of one worker task (MB), valid for worker_cpu."
  type        = number
  default     = 1024
}

variable "worker_concurrency" {
  description = "SOLO_OS_WORKER_CONCURRENCY: handlers one worker task runs at once."
  type        = number
  default     = 32
}

variable "db_instance_class" {
  description = "RDS instance class of the PostgreSQL database."
  type        = string
  default     = "db.t4g.micro"
}

variable "db_allocated_storage_gb" {
  description = "Initial storage of the database (GB)."
  type        = number
  default     = 20
}

variable "db_max_allocated_storage_gb" {
  description = "Storage autoscaling limit of the database (GB)."
  type        = number
  default     = 100
}

variable "db_multi_az" {
  description = "Run the database with a standby in a second availability zone."
  type        = bool
  default     = false
}

variable "db_backup_retention_days" {
  description = "Days of automated database backups (point-in-time recovery)."
  type        = number
  default     = 7
}

variable "db_deletion_protection" {
  description = "Refuse to delete the database (set false before terraform destroy)."
  type        = bool
  default     = true
}

variable "db_password_version" {
  description = "Increase to generate and set a new database password (the worker and the Lambda function pick it up when they restart)."
  type        = number
  default     = 1
}
