module github.com/agentidp/agentidp/cmd/agentidp

go 1.26
