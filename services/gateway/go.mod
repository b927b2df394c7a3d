module github.com/agentidp/agentidp/services/gateway

go 1.26
