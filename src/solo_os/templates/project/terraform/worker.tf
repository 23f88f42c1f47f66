# The worker and the scheduler, as one ECS Fargate service: each task runs a worker (claims
# executions from PostgreSQL and runs the handlers) and a scheduler (fires cron schedules,
# exactly once across tasks). Both first bring the schema up to date (safe from several
# processes at once: an advisory lock), so the Lambda ingress finds it current.

resource "aws_ecs_cluster" "main" {
  name = local.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_cloudwatch_log_group" "worker" {
  name              = "/ecs/${local.name}-worker"
  retention_in_days = var.log_retention_days
}

resource "aws_ecs_task_definition" "worker" {
  family                   = "${local.name}-worker"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.worker_cpu
  memory                   = var.worker_memory_mb
  execution_role_arn       = aws_iam_role.ecs_execution.arn
  task_role_arn            = aws_iam_role.worker_task.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.architecture == "arm64" ? "ARM64" : "X86_64"
  }

  container_definitions = jsonencode([
    {
      name       = "worker"
      image      = var.image
      essential  = true
      entryPoint = ["sh", "-c"]
      command    = ["solo-os db upgrade && exec solo-os worker"]
      environment = [
        for key, value in merge(local.app_env, {
          SOLO_OS_WORKER_CONCURRENCY = tostring(var.worker_concurrency)
          SOLO_OS_HEALTH_URL         = "" # no HTTP port in this role
        }) : { name = key, value = value }
      ]
      secrets = [
        { name = "PGPASSWORD", valueFrom = aws_secretsmanager_secret.db_password.arn },
      ]
      stopTimeout = 30 # SIGTERM first: running handlers finish or hand their lease back
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.worker.name
          awslogs-region        = var.aws_region
          awslogs-stream-prefix = "worker"
        }
      }
    },
    {
      # Fires the app's cron schedules: each fire exactly once however many tasks run.
      name       = "scheduler"
      image      = var.image
      essential  = true
      entryPoint = ["sh", "-c"]
      command    = ["solo-os db upgrade && exec solo-os scheduler"]
      environment = [
        for key, value in merge(local.app_env, {
          SOLO_OS_HEALTH_URL = "" # no HTTP port in this role
        }) : { name = key, value = value }
      ]
      secrets = [
        { name = "PGPASSWORD", valueFrom = aws_secretsmanager_secret.db_password.arn },
      ]
      stopTimeout = 30
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.worker.name
          awslogs-region        = var.aws_region
          awslogs-stream-prefix = "scheduler"
        }
      }
    },
  ])
}

resource "aws_ecs_service" "worker" {
  name            = "${local.name}-worker"
  cluster         = aws_ecs_cluster.main.id
  task_definition = aws_ecs_task_definition.worker.arn
  desired_count   = var.worker_count
  launch_type     = "FARGATE"

  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [aws_security_group.app.id]
    assign_public_ip = false
  }

  depends_on = [aws_iam_role_policy.worker_secrets, aws_secretsmanager_secret_version.db_password]
}
