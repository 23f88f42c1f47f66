output "webhook_base_url" {
  description = "The function URL; sources are at <this>webhooks/<source>, e.g. https://abc.lambda-url.eu-west-1.on.aws/webhooks/stripe."
  value       = aws_lambda_function_url.ingress.function_url
}

output "lambda_function_name" {
  description = "Name of the ingress Lambda function (logs: /aws/lambda/<name>)."
  value       = aws_lambda_function.ingress.function_name
}

output "ecs_cluster_name" {
  description = "ECS cluster of the worker service."
  value       = aws_ecs_cluster.main.name
}

output "worker_service_name" {
  description = "ECS service that runs the workers (scale with worker_count)."
  value       = aws_ecs_service.worker.name
}

output "worker_task_definition_arn" {
  description = "Task definition of the worker; run it once with another command (e.g. 'solo-os dlq list') for operations."
  value       = aws_ecs_task_definition.worker.arn
}

output "database_address" {
  description = "Host name of the PostgreSQL database (private)."
  value       = aws_db_instance.main.address
}

output "database_url" {
  description = "DATABASE_URL without the password (the password is in database_password_secret_arn)."
  value       = local.database_url
}

output "database_password_secret_arn" {
  description = "Secrets Manager secret holding the database password (PGPASSWORD)."
  value       = aws_secretsmanager_secret.db_password.arn
}

output "webhook_secret_arns" {
  description = "Secrets Manager secret per source secret variable: put each signing secret in with aws secretsmanager put-secret-value."
  value       = { for env_name, secret in aws_secretsmanager_secret.webhook : env_name => secret.arn }
}

output "log_groups" {
  description = "CloudWatch log groups of the ingress and the worker."
  value = {
    ingress = aws_cloudwatch_log_group.ingress.name
    worker  = aws_cloudwatch_log_group.worker.name
  }
}
