# solo-os on AWS in the seed's shape:
#   webhooks -> Lambda function URL -> ingress (solo_os.aws_lambda.handler, Mangum)
#                                        | stores each event and its executions
#                                        v
#                                  RDS PostgreSQL 16 <- ECS Fargate worker service
# Secrets live in Secrets Manager: solo-os resolves "aws-sm:ARN" references itself and
# re-reads them after SOLO_OS_SECRET_TTL, so a rotated webhook secret needs no redeploy.

locals {
  name = var.name

  database_url = "postgresql://${aws_db_instance.main.username}@${aws_db_instance.main.address}:${aws_db_instance.main.port}/${aws_db_instance.main.db_name}"

  # STRIPE_WEBHOOK_SECRET = "aws-sm:arn:aws:secretsmanager:..." for every source's secret.
  webhook_secret_env = { for env_name, secret in aws_secretsmanager_secret.webhook : env_name => "aws-sm:${secret.arn}" }

  app_env = merge(var.environment, local.webhook_secret_env, {
    SOLO_OS_APP            = var.app
    DATABASE_URL           = local.database_url
    LOG_LEVEL              = var.log_level
    SOLO_OS_RETENTION_DAYS = tostring(var.retention_days)
  })

  secret_arns = concat([aws_secretsmanager_secret.db_password.arn], [for s in aws_secretsmanager_secret.webhook : s.arn])
}

# --- network -----------------------------------------------------------------------------

resource "aws_security_group" "app" {
  name_prefix = "${local.name}-app-"
  description = "solo-os ingress (Lambda) and worker (ECS): outbound only"
  vpc_id      = var.vpc_id

  egress {
    description = "database, Secrets Manager, ECR, CloudWatch Logs and calls made by handlers"
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"]
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_security_group" "db" {
  name_prefix = "${local.name}-db-"
  description = "solo-os PostgreSQL: reachable from the app only"
  vpc_id      = var.vpc_id

  ingress {
    description     = "PostgreSQL from the ingress and the worker"
    from_port       = 5432
    to_port         = 5432
    protocol        = "tcp"
    security_groups = [aws_security_group.app.id]
  }

  lifecycle {
    create_before_destroy = true
  }
}

# --- secrets -----------------------------------------------------------------------------

# One secret per source. Terraform creates the container only, so no signing secret is ever
# in the Terraform state; put the value in yourself:
#   aws secretsmanager put-secret-value --secret-id <arn> --secret-string 'whsec_...'
# During a rotation store "new,old" (both verify), later "new".
resource "aws_secretsmanager_secret" "webhook" {
  for_each = toset(var.webhook_secrets)

  name_prefix             = "${local.name}/${each.key}-"
  description             = "solo-os signing secret ${each.key} (comma-separated during a rotation)"
  recovery_window_in_days = 7
}

# The database password: generated at apply time and written only to Secrets Manager and
# RDS (write-only arguments); never stored in the state or the plan.
ephemeral "aws_secretsmanager_random_password" "db" {
  password_length     = 40
  exclude_punctuation = true
}

resource "aws_secretsmanager_secret" "db_password" {
  name_prefix             = "${local.name}/database-password-"
  description             = "solo-os PostgreSQL password (PGPASSWORD)"
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "db_password" {
  secret_id                = aws_secretsmanager_secret.db_password.id
  secret_string_wo         = ephemeral.aws_secretsmanager_random_password.db.random_password
  secret_string_wo_version = var.db_password_version
}

# --- database ----------------------------------------------------------------------------

resource "aws_db_subnet_group" "main" {
  name       = local.name
  subnet_ids = var.private_subnet_ids
}

resource "aws_db_instance" "main" {
  identifier     = local.name
  engine         = "postgres"
  engine_version = "16"
  instance_class = var.db_instance_class

  db_name             = "solo_os"
  username            = "solo_os"
  password_wo         = ephemeral.aws_secretsmanager_random_password.db.random_password
  password_wo_version = var.db_password_version

  allocated_storage     = var.db_allocated_storage_gb
  max_allocated_storage = var.db_max_allocated_storage_gb
  storage_type          = "gp3"
  storage_encrypted     = true

  db_subnet_group_name   = aws_db_subnet_group.main.name
  vpc_security_group_ids = [aws_security_group.db.id]
  publicly_accessible    = false
  multi_az               = var.db_multi_az

  backup_retention_period    = var.db_backup_retention_days
  auto_minor_version_upgrade = true
  deletion_protection        = var.db_deletion_protection
  skip_final_snapshot        = false
  final_snapshot_identifier  = "${local.name}-final"
}
