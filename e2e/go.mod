module github.com/agentidp/agentidp/e2e

go 1.26
