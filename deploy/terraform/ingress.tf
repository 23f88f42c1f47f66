# The webhook ingress: solo-os's ASGI app through Mangum, behind a public function URL.
# Authentication is the providers' signatures (verified by solo-os, failing closed), so the
# URL itself needs no AWS auth.

resource "aws_cloudwatch_log_group" "ingress" {
  name              = "/aws/lambda/${local.name}-ingress"
  retention_in_days = var.log_retention_days
}

resource "aws_lambda_function" "ingress" {
  function_name = "${local.name}-ingress"
  description   = "solo-os webhook ingress (solo_os.aws_lambda.handler)"
  role          = aws_iam_role.lambda.arn
  package_type  = "Image"
  image_uri     = var.image
  architectures = [var.architecture]
  memory_size   = var.lambda_memory_mb
  timeout       = var.lambda_timeout_seconds

  reserved_concurrent_executions = var.lambda_reserved_concurrency

  image_config {
    entry_point       = ["python", "-m", "awslambdaric"]
    command           = ["solo_os.aws_lambda.handler"]
    working_directory = "/app"
  }

  vpc_config {
    subnet_ids         = var.private_subnet_ids
    security_group_ids = [aws_security_group.app.id]
  }

  environment {
    # PGPASSWORD as a reference: solo_os.aws_lambda resolves it once per container.
    variables = merge(local.app_env, {
      PGPASSWORD = "aws-sm:${aws_secretsmanager_secret.db_password.arn}"
    })
  }

  depends_on = [
    aws_cloudwatch_log_group.ingress,
    aws_iam_role_policy_attachment.lambda_vpc,
    aws_iam_role_policy.lambda_secrets,
  ]
}

resource "aws_lambda_function_url" "ingress" {
  function_name      = aws_lambda_function.ingress.function_name
  authorization_type = "NONE"
}

resource "aws_lambda_permission" "function_url" {
  statement_id           = "FunctionURLAllowPublicAccess"
  action                 = "lambda:InvokeFunctionUrl"
  function_name          = aws_lambda_function.ingress.function_name
  principal              = "*"
  function_url_auth_type = "NONE"
}
