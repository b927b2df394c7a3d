module github.com/agentidp/agentidp/services/token

go 1.26
