module github.com/agentidp/agentidp/libs/config

go 1.26
