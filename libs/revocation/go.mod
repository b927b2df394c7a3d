module github.com/agentidp/agentidp/libs/revocation

go 1.26
